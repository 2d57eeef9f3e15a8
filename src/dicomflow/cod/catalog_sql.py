"""The catalog in SQL: SQLite (embedded, one file) or PostgreSQL (shared by many nodes).

Four tables: ``series`` (one row per series: the attributes of its first instance
and the indexed columns, see :mod:`dicomflow.cod.catalog_rows`), ``instances``,
and ``studies`` and ``patients`` (their counts, modalities and first series),
which every :meth:`SQLCatalog.record` brings up to date in the same transaction.

A search selects with the conditions of :mod:`dicomflow.cod.catalog_filter`, in
pages, and checks with :meth:`Query.matches` every row those conditions could not
decide, until it holds ``offset + limit`` results: when every key became a
condition, SQL alone pages. Studies and patients match when one of their series
does (its attributes with the study's or patient's computed ones).
"""

import itertools
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomflow.cod.catalog_filter import (
    Columns,
    Filter,
    Wildcard,
    like_wildcard,
    pushdown,
    sqlite_wildcard,
)
from dicomflow.cod.catalog_rows import (
    INSTANCE_COLUMNS,
    SERIES_COLUMNS,
    ColumnKind,
    InstanceRow,
    SeriesRows,
    in_summary,
    series_rows,
)
from dicomflow.cod.catalog_types import EVERYWHERE, Level, LocatedInstance, Scope, redacted
from dicomflow.cod.query import SeriesDocument
from dicomflow.dicom.matching import DicomJson, Query
from dicomflow.errors import CatalogError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "4"
SERIES_MAP: Columns = {
    **{column.tag: (f"s.{column.name}", column.kind) for column in SERIES_COLUMNS},
    "0020000D": ("s.study_uid", ColumnKind.UID),
    "0020000E": ("s.series_uid", ColumnKind.UID),
}
LEVEL_COLUMNS: dict[Level, Columns] = {
    Level.PATIENT: SERIES_MAP,
    Level.STUDY: {**SERIES_MAP, "00080061": ("s.modality", ColumnKind.CODE)},
    Level.SERIES: SERIES_MAP,
    Level.IMAGE: {
        **SERIES_MAP,
        **{column.tag: (f"i.{column.name}", column.kind) for column in INSTANCE_COLUMNS},
        "00080018": ("i.sop_uid", ColumnKind.UID),
        "00083002": ("i.transfer_syntax", ColumnKind.UID),
    },
}
SERIES_FIELDS = (
    "study_uid", "series_uid", "patient_key", "modality_first",
    *(column.name for column in SERIES_COLUMNS),
    "irregular", "instance_count", "attributes", "summary",
)  # fmt: skip
INSTANCE_FIELDS = (
    "study_uid", "series_uid", "sop_uid", "sop_class_uid", "transfer_syntax", "position",
    *(column.name for column in INSTANCE_COLUMNS), "irregular", "delta",
)  # fmt: skip
PATIENT_TAGS = ("0010", "00080005")
LOCATE_BATCH = 200
WAL_PAGES = 10_000  # checkpoint (and sync) every ~40 MB of changes, not every ~4 MB


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL."""

    text: str
    real: str
    wildcard: Wildcard
    placeholder: str


SQLITE = Dialect("TEXT", "REAL", sqlite_wildcard, "?")
POSTGRES = Dialect('TEXT COLLATE "C"', "DOUBLE PRECISION", like_wildcard, "%s")


def _schema(d: Dialect) -> list[str]:
    t, r = d.text, d.real
    series_columns = ", ".join(
        f"{c.name} {r if c.kind is ColumnKind.NUMBER else t}" for c in SERIES_COLUMNS
    )
    statements = [
        f"CREATE TABLE IF NOT EXISTS catalog_meta (name {t} PRIMARY KEY, value {t})",
        f"""CREATE TABLE IF NOT EXISTS series (
            study_uid {t} NOT NULL, series_uid {t} NOT NULL, patient_key {t} NOT NULL,
            modality_first {t}, {series_columns}, irregular INTEGER NOT NULL,
            instance_count INTEGER NOT NULL, attributes {t} NOT NULL, summary {t} NOT NULL,
            PRIMARY KEY (study_uid, series_uid))""",
        f"""CREATE TABLE IF NOT EXISTS instances (
            study_uid {t} NOT NULL, series_uid {t} NOT NULL, sop_uid {t} NOT NULL,
            sop_class_uid {t} NOT NULL, transfer_syntax {t} NOT NULL,
            position INTEGER NOT NULL, sop_class_key {t}, instance_number {r},
            irregular INTEGER NOT NULL, delta {t} NOT NULL,
            PRIMARY KEY (study_uid, series_uid, sop_uid))""",
        f"""CREATE TABLE IF NOT EXISTS studies (
            study_uid {t} PRIMARY KEY, patient_key {t} NOT NULL,
            first_series_uid {t} NOT NULL, series_count INTEGER NOT NULL,
            instance_count INTEGER NOT NULL, modalities {t} NOT NULL,
            irregular INTEGER NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS patients (
            patient_key {t} PRIMARY KEY, first_study_uid {t} NOT NULL,
            first_series_uid {t} NOT NULL, study_count INTEGER NOT NULL,
            series_count INTEGER NOT NULL, instance_count INTEGER NOT NULL,
            irregular INTEGER NOT NULL)""",
    ]
    # each column with the study and patient keys: the study and patient searches read
    # the index alone
    indexed = ["irregular", *(c.name for c in SERIES_COLUMNS)]
    statements += [
        f"CREATE INDEX IF NOT EXISTS series_{name} ON series ({name}, study_uid, patient_key)"
        for name in indexed
    ]
    statements += [
        f"CREATE INDEX IF NOT EXISTS series_{name} ON series ({name})"
        for name in ("patient_key", "series_uid")
    ]
    statements += [
        f"CREATE INDEX IF NOT EXISTS instances_{name} ON instances ({name})"
        for name in ("sop_uid", "sop_class_key", "irregular")
    ]
    return statements


class SQLCatalog:
    """A :class:`~dicomflow.cod.catalog.Catalog` over SQL: SQLite with a connection per
    thread (WAL: readers do not wait for the writer, writers wait for each other), or
    PostgreSQL with one connection the threads of a process use in turn."""

    def __init__(
        self,
        location: str,
        dialect: Dialect,
        connect: Callable[[], Any],
        replace_old: bool = False,
    ) -> None:
        self.location = location
        self.dialect = dialect
        self._connect = connect
        self._shared = dialect is POSTGRES  # one connection for all threads, in turn
        self._lock = threading.RLock()
        self._local = threading.local()  # SQLite: a connection per thread, reading at once
        self.current: Any = None  # the shared connection (PostgreSQL)
        self._opened: list[Any] = []
        if not self._has_schema(replace_old):
            self._create_schema()

    def _has_schema(self, replace_old: bool) -> bool:
        """Whether the tables are there (every archive job opens the catalog: most
        openings need no write); tables of another version are dropped with
        ``replace_old`` (a rebuild fills them again), else refused."""
        try:
            rows = self._execute("SELECT value FROM catalog_meta WHERE name = 'schema'")
        except CatalogError:
            return False
        if rows and rows[0][0] != SCHEMA_VERSION and replace_old:
            with self._transaction():
                for table in ("instances", "series", "studies", "patients", "catalog_meta"):
                    self._execute(f"DROP TABLE IF EXISTS {table}")
            return False
        if rows and rows[0][0] != SCHEMA_VERSION:
            raise CatalogError(
                f'Catalog "{redacted(self.location)}" (the catalog setting) has the tables of '
                f"version {rows[0][0]}, not {SCHEMA_VERSION}: rebuild it with dicomflow cod "
                "reindex."
            )
        return bool(rows)

    def _create_schema(self) -> None:
        dialect = self.dialect
        with self._transaction():
            if dialect is POSTGRES:  # concurrent first openings create the schema once
                self._execute("SELECT pg_advisory_xact_lock(4711)")
            for statement in _schema(dialect):
                self._execute(statement)
            self._execute(
                "INSERT INTO catalog_meta (name, value) VALUES ('schema', ?) "
                "ON CONFLICT (name) DO NOTHING",
                [SCHEMA_VERSION],
            )

    # -- writing ---------------------------------------------------------------------

    def record(self, document: SeriesDocument) -> None:
        self.record_many([document])

    def record_many(self, documents: Sequence[SeriesDocument], keep_larger: bool = False) -> int:
        """:meth:`record` several series in one transaction (what a rebuild does); with
        ``keep_larger`` a series catalogued with more instances than its document holds
        is kept (an archive job recorded it since the document was read). Returns how
        many were recorded."""
        prepared = [(document, series_rows(document)) for document in documents]
        recorded = 0
        with self._writing():
            for document, rows in prepared:
                recorded += self._record_one(document, rows, keep_larger)
        return recorded

    def _record_one(
        self, document: SeriesDocument, rows: SeriesRows | None, keep_larger: bool
    ) -> bool:
        study_uid, series_uid = document.study_uid, document.series_uid
        if keep_larger and self._instance_count(study_uid, series_uid) > len(document.instances):
            return False
        before = self._patient_of(study_uid, series_uid)
        if rows is None:
            self._delete_series(study_uid, series_uid)
        else:
            self._insert(rows)
        self._refresh_study(study_uid)
        for key in {*before, *([rows.series.patient_key] if rows else [])}:
            self._refresh_patient(key)
        return True

    def _instance_count(self, study_uid: str, series_uid: str) -> int:
        rows = self._execute(
            "SELECT instance_count FROM series WHERE study_uid = ? AND series_uid = ?",
            [study_uid, series_uid],
        )
        return int(rows[0][0]) if rows else 0

    def forget(self, study_uid: str, series_uid: str) -> None:
        with self._writing():
            before = self._patient_of(study_uid, series_uid)
            if not before:
                return
            self._delete_series(study_uid, series_uid)
            self._refresh_study(study_uid)
            self._refresh_patient(before[0])

    def count(self, level: Level) -> int:
        """How many patients, studies, series or instances are catalogued."""
        table = {
            Level.PATIENT: "patients",
            Level.STUDY: "studies",
            Level.SERIES: "series",
            Level.IMAGE: "instances",
        }[level]
        return int(self._execute(f"SELECT count(*) FROM {table}")[0][0])

    def catalogued_series(self) -> list[tuple[str, str]]:
        """Every catalogued (study, series), sorted."""
        rows = self._execute(
            "SELECT study_uid, series_uid FROM series ORDER BY study_uid, series_uid"
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    def _patient_of(self, study_uid: str, series_uid: str) -> list[str]:
        rows = self._execute(
            "SELECT patient_key FROM series WHERE study_uid = ? AND series_uid = ?",
            [study_uid, series_uid],
        )
        return [str(row[0]) for row in rows]

    def _delete_series(self, study_uid: str, series_uid: str) -> None:
        for table in ("instances", "series"):
            self._execute(
                f"DELETE FROM {table} WHERE study_uid = ? AND series_uid = ?",
                [study_uid, series_uid],
            )

    def _insert(self, rows: SeriesRows) -> None:
        s = rows.series
        values = [s.study_uid, s.series_uid, s.patient_key, s.modality, *s.columns.values()]
        values += [int(s.irregular), s.instance_count, s.attributes, s.summary]
        self._execute(
            "DELETE FROM instances WHERE study_uid = ? AND series_uid = ?",
            [s.study_uid, s.series_uid],
        )
        self._execute(_upsert_sql("series", SERIES_FIELDS, keys=2), values)
        instances = [[s.study_uid, s.series_uid, *_instance_values(i)] for i in rows.instances]
        self._executemany(_insert_sql("instances", INSTANCE_FIELDS), instances)

    def _refresh_study(self, study_uid: str) -> None:
        rows = self._execute(
            "SELECT series_uid, modality_first, instance_count, irregular, patient_key "
            "FROM series WHERE study_uid = ? ORDER BY series_uid",
            [study_uid],
        )
        if not rows:
            self._execute("DELETE FROM studies WHERE study_uid = ?", [study_uid])
            return
        modalities = sorted({str(row[1]) for row in rows if row[1]})
        values = [study_uid, rows[0][4], rows[0][0], len(rows), sum(row[2] for row in rows)]
        values += ["\\".join(modalities), int(any(row[3] for row in rows))]
        fields: tuple[str, ...] = ("study_uid", "patient_key", "first_series_uid", "series_count")
        fields += ("instance_count", "modalities", "irregular")
        self._execute(_upsert_sql("studies", fields), values)

    def _refresh_patient(self, patient_key: str) -> None:
        rows = self._execute(
            "SELECT study_uid, series_uid, instance_count, irregular FROM series "
            "WHERE patient_key = ? ORDER BY study_uid, series_uid",
            [patient_key],
        )
        if not rows:
            self._execute("DELETE FROM patients WHERE patient_key = ?", [patient_key])
            return
        values = [patient_key, rows[0][0], rows[0][1], len({row[0] for row in rows})]
        values += [len(rows), sum(row[2] for row in rows), int(any(row[3] for row in rows))]
        fields: tuple[str, ...] = (
            "patient_key",
            "first_study_uid",
            "first_series_uid",
            "study_count",
        )
        fields += ("series_count", "instance_count", "irregular")
        self._execute(_upsert_sql("patients", fields), values)

    # -- reading ---------------------------------------------------------------------

    def search(self, level: Level, query: Query, scope: Scope = EVERYWHERE) -> list[DicomJson]:
        matching = self._matching(level, query, scope, paged=True)
        start = query.offset - matching.skipped
        end = None if query.limit is None else start + query.limit
        return [_result(level, row) for row in itertools.islice(matching, start, end)]

    def locate(
        self, level: Level, query: Query, scope: Scope = EVERYWHERE
    ) -> list[LocatedInstance]:
        rows = list(self._matching(level, query, scope, paged=False))
        if level is Level.IMAGE:
            return [LocatedInstance(row[0], row[1], row[2], row[7], row[8]) for row in rows]
        where, keys = {
            Level.PATIENT: ("s.patient_key", [(row[0],) for row in rows]),
            Level.STUDY: ("s.study_uid", [(row[0],) for row in rows]),
            Level.SERIES: ("s.study_uid, s.series_uid", [row[0:2] for row in rows]),
        }[level]
        located: list[tuple[Any, ...]] = []
        for start in range(0, len(keys), LOCATE_BATCH):
            located += self._instances_of(where, keys[start : start + LOCATE_BATCH])
        located.sort(key=lambda row: (*row[:2], row[5], row[2]))
        return [LocatedInstance(*row[:5]) for row in located]

    def _instances_of(self, where: str, keys: Sequence[tuple[Any, ...]]) -> list[Any]:
        width = len(keys[0])
        one = "(" + ", ".join("?" for _ in range(width)) + ")"
        matched = where if width == 1 else f"({where})"
        rows = self._execute(
            "SELECT i.study_uid, i.series_uid, i.sop_uid, i.sop_class_uid, "
            "i.transfer_syntax, i.position FROM instances i JOIN series s "
            "ON s.study_uid = i.study_uid AND s.series_uid = i.series_uid "
            f"WHERE {matched} IN ({', '.join(one for _ in keys)})",
            [value for key in keys for value in key],
        )
        return list(rows)

    def _matching(self, level: Level, query: Query, scope: Scope, paged: bool) -> "_Rows":
        """The rows of the matching entities, in order (see :func:`_select`); paged, SQL
        skips ``query.offset`` rows itself when every row it selects matches."""
        found = pushdown(query, LEVEL_COLUMNS[level], self.dialect.wildcard)
        column = "attributes" if _needs_attributes(level, query) else "summary"
        sql, params = _select(level, found, scope, column)
        skips = paged and query.offset > 0 and self._all_match(level, found, scope)
        skipped = query.offset if skips else 0
        wanted = query.offset + query.limit if paged and query.limit is not None else None
        pages = self._pages(sql, params, skipped, wanted)
        return _Rows(self._checked(level, query, found, pages, column), skipped)

    def _checked(
        self, level: Level, query: Query, found: Filter, pages: Iterator[list[Any]], column: str
    ) -> Iterator[Any]:
        """The rows of ``pages`` that match: as SQL selected them, or by
        :meth:`Query.matches` for those it could not decide."""
        for page in pages:
            undecided = [row for row in page if not found.exact or row[3]]
            series = self._series_of(level, undecided, column)
            for row in page:
                if (found.exact and not row[3]) or _matches(level, query, row, series):
                    yield row

    def _series_of(self, level: Level, rows: list[Any], column: str) -> dict[str, list[str]]:
        """The series attributes (``column``) of the studies or patients of ``rows``, by
        entity: what their matching reads, fetched a batch at a time."""
        if level in (Level.IMAGE, Level.SERIES) or not rows:
            return {}
        key = "study_uid" if level is Level.STUDY else "patient_key"
        found: dict[str, list[str]] = {}
        for start in range(0, len(rows), LOCATE_BATCH):
            keys = [row[0] for row in rows[start : start + LOCATE_BATCH]]
            marks = ", ".join("?" for _ in keys)
            sql = f"SELECT {key}, {column} FROM series WHERE {key} IN ({marks})"
            for entity, attributes in self._execute(sql, keys):
                found.setdefault(entity, []).append(attributes)
        return found

    def _all_match(self, level: Level, found: Filter, scope: Scope) -> bool:
        """Whether every row SQL selects matches (then SQL may skip the offset): all keys
        became conditions, and no selected row is irregular."""
        if not found.exact or not found.conditions:
            return found.exact
        sql, params = _select(level, found, scope, "summary", irregular_only=True)
        return not self._execute(f"{sql} LIMIT 1", params)

    def _pages(
        self, sql: str, params: list[Any], start: int, wanted: int | None
    ) -> Iterator[list[Any]]:
        """The rows of ``sql`` from ``start``: all at once, or in growing pages up to
        ``wanted`` first."""
        if wanted is None and not start:
            yield self._execute(sql, params)
            return
        size = max((wanted or 0) - start, 1) if wanted is not None else 1 << 62
        while True:
            rows = self._execute(f"{sql} LIMIT ? OFFSET ?", [*params, size, start])
            yield rows
            if len(rows) < size:
                return
            start, size = start + size, size * 2

    # -- connection ------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()
            self._local = threading.local()
            self.current = None

    def _guard(self) -> AbstractContextManager[Any]:
        return self._lock if self._shared else nullcontext()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A transaction that updates series with their studies and patients, one at a
        time (SQLite's writers take turns; PostgreSQL's take an advisory lock, or two
        series of one study recorded at once would each count the study without the
        other)."""
        with self._transaction():
            if self._shared:
                self._execute("SELECT pg_advisory_xact_lock(4712)")
            yield

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._guard():
            self._execute("BEGIN" if self.dialect is POSTGRES else "BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._execute_quietly("ROLLBACK")
                raise
            self._execute("COMMIT")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._guard(), self._errors():
            cursor = self._cursor()
            cursor.execute(self._sql(sql), params)
            return list(cursor.fetchall()) if cursor.description else []

    def _executemany(self, sql: str, rows: list[list[Any]]) -> None:
        with self._guard(), self._errors():
            self._cursor().executemany(self._sql(sql), rows)

    def _execute_quietly(self, sql: str) -> None:
        try:
            self._execute(sql)
        except CatalogError as exc:
            logger.warning("catalog: %s failed: %s", sql, exc)

    def _cursor(self) -> Any:
        holder = self if self._shared else self._local
        connection = getattr(holder, "current", None)
        if connection is None or getattr(connection, "closed", False):
            connection = holder.current = self._connect()
            with self._lock:
                self._opened.append(connection)
        return connection.cursor()

    def _sql(self, sql: str) -> str:
        return sql if self.dialect is SQLITE else sql.replace("?", "%s")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, _postgres_error()) as exc:
            if self._shared and getattr(self.current, "broken", False):
                self.current = None  # reconnect on the next statement
            raise CatalogError(
                f'Catalog "{redacted(self.location)}" (the catalog setting): '
                f"{type(exc).__name__}: {str(exc).strip()}"
            ) from exc


def _postgres_error() -> type[Exception]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return sqlite3.Error
    return psycopg.Error


def _instance_values(row: InstanceRow) -> list[Any]:
    fixed = [row.sop_uid, row.sop_class_uid, row.transfer_syntax, row.position]
    return [*fixed, *row.columns.values(), int(row.irregular), row.delta]


def _upsert_sql(table: str, fields: Sequence[str], keys: int = 1) -> str:
    """An INSERT that replaces the row of the same key (the first ``keys`` fields)."""
    updates = ", ".join(f"{name} = excluded.{name}" for name in fields[keys:])
    conflict = ", ".join(fields[:keys])
    return f"{_insert_sql(table, fields)} ON CONFLICT ({conflict}) DO UPDATE SET {updates}"


def _insert_sql(table: str, fields: Sequence[str]) -> str:
    marks = ", ".join("?" for _ in fields)
    return f"INSERT INTO {table} ({', '.join(fields)}) VALUES ({marks})"


@dataclass
class _Rows:
    """Matching rows, and how many SQL skipped already."""

    rows: Iterator[Any]
    skipped: int

    def __iter__(self) -> Iterator[Any]:
        return self.rows


def _matches(level: Level, query: Query, row: Any, series: dict[str, list[str]]) -> bool:
    """:meth:`Query.matches` for a row SQL could not decide: a study or patient matches
    when one of its series does (``series``: their attributes, by entity)."""
    if level in (Level.IMAGE, Level.SERIES):
        return query.matches(_result(level, row))
    computed = _computed(level, row)
    return any(query.matches({**json.loads(s), **computed}) for s in series.get(row[0], []))


def _needs_attributes(level: Level, query: Query) -> bool:
    """Whether a search needs the attributes of whole instances: at the IMAGE level, with
    ``includefield=all``, or for a key or includefield beyond the series' summaries."""
    if level is Level.IMAGE or query.include_all:
        return True
    return not all(in_summary(tag) for tag in query.key_tags() | query.include)


def _select(
    level: Level, found: Filter, scope: Scope, column: str, irregular_only: bool = False
) -> tuple[str, list[Any]]:
    """The SELECT of one level (of its irregular rows alone with ``irregular_only``). Its
    rows start with the entity's keys (up to 3), the irregular flag (3), then what
    :func:`_result` reads."""
    irregular = "s.irregular = 1 OR i.irregular = 1" if level is Level.IMAGE else "s.irregular = 1"
    scoped, scope_params = _scoped(scope)
    if level in (Level.IMAGE, Level.SERIES):
        where = f"({found.where()} OR {irregular})" if found.conditions else "1 = 1"
        params = [*found.params, *scope_params]
        if found.conditions and found.tables == {"s"}:  # the matching series drive it
            alias = "i" if level is Level.IMAGE else "s"
            series = "SELECT s.study_uid, s.series_uid FROM series s WHERE"
            keys = f"{series} {found.where()}{scoped} UNION {series} s.irregular = 1{scoped}"
            if level is Level.IMAGE:  # and instances that differ from their series
                keys += " UNION SELECT study_uid, series_uid FROM instances WHERE irregular = 1"
            where = f"({alias}.study_uid, {alias}.series_uid) IN ({keys}) AND {where}"
            params = [*found.params, *scope_params, *scope_params, *params]
        return _select_rows(level, where + scoped, column, irregular_only), params
    table, key = ("st", "study_uid") if level is Level.STUDY else ("p", "patient_key")
    outer, params = [], []
    if found.conditions or scoped:
        # UNION rather than OR: each half reads one index alone (covering, see _schema)
        inner = f"SELECT s.{key} FROM series s WHERE {found.where()}{scoped}"
        if found.conditions:
            inner += f" UNION SELECT s.{key} FROM series s WHERE s.irregular = 1{scoped}"
        outer.append(f"{table}.{key} IN ({inner})")
        params = [*found.params, *scope_params]
        params += scope_params if found.conditions else []
    outer += [f"{table}.irregular = 1"] if irregular_only else []
    matched = f"WHERE {' AND '.join(outer)}" if outer else ""
    if level is Level.STUDY:
        return (
            f"SELECT st.study_uid, NULL, NULL, st.irregular, f.{column}, st.series_count, "
            "st.instance_count, st.modalities FROM studies st JOIN series f "
            "ON f.study_uid = st.study_uid AND f.series_uid = st.first_series_uid "
            f"{matched} ORDER BY st.study_uid",
            params,
        )
    return (
        f"SELECT p.patient_key, NULL, NULL, p.irregular, f.{column}, p.study_count, "
        "p.series_count, p.instance_count FROM patients p JOIN series f "
        "ON f.study_uid = p.first_study_uid AND f.series_uid = p.first_series_uid "
        f"{matched} ORDER BY p.patient_key",
        params,
    )


def _scoped(scope: Scope) -> tuple[str, list[str]]:
    """The conditions of ``scope`` (`` AND …``) and their parameters."""
    sql, params = "", []
    for column, value in (("s.study_uid", scope.study_uid), ("s.series_uid", scope.series_uid)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    return sql, params


def _select_rows(level: Level, where: str, column: str, irregular_only: bool) -> str:
    if level is Level.IMAGE:
        where += " AND (s.irregular = 1 OR i.irregular = 1)" if irregular_only else ""
        return (
            "SELECT i.study_uid, i.series_uid, i.sop_uid, s.irregular + i.irregular, "
            "s.attributes, i.delta, 0, i.sop_class_uid, i.transfer_syntax "
            "FROM instances i JOIN series s "
            "ON s.study_uid = i.study_uid AND s.series_uid = i.series_uid "
            f"WHERE {where} ORDER BY i.study_uid, i.series_uid, i.position, i.sop_uid"
        )
    where += " AND s.irregular = 1" if irregular_only else ""
    return (
        f"SELECT s.study_uid, s.series_uid, NULL, s.irregular, s.{column}, "
        f"s.instance_count FROM series s WHERE {where} ORDER BY s.study_uid, s.series_uid"
    )


def _result(level: Level, row: Any) -> DicomJson:
    attributes: DicomJson = json.loads(row[4])
    if level is Level.IMAGE:
        return {
            **attributes,
            **json.loads(row[5]),
            "0020000D": _uid(row[0]),
            "0020000E": _uid(row[1]),
            "00080018": _uid(row[2]),
        }
    if level is Level.PATIENT:
        kept = {t: e for t, e in attributes.items() if t.startswith(PATIENT_TAGS)}
        return {"00100020": {"vr": "LO"}, **kept, **_computed(level, row)}
    return {**attributes, **_computed(level, row)}


def _computed(level: Level, row: Any) -> DicomJson:
    if level is Level.SERIES:
        return {
            "0020000D": _uid(row[0]),
            "0020000E": _uid(row[1]),
            "00201209": _count(row[5]),
        }
    if level is Level.STUDY:
        modalities = row[7].split("\\") if row[7] else []
        return {
            "0020000D": _uid(row[0]),
            "00201206": _count(row[5]),
            "00201208": _count(row[6]),
            "00080061": {"vr": "CS", "Value": modalities} if modalities else {"vr": "CS"},
        }
    return {"00201200": _count(row[5]), "00201202": _count(row[6]), "00201204": _count(row[7])}


def _uid(value: str) -> DicomJson:
    return {"vr": "UI", "Value": [value]}


def _count(value: int) -> DicomJson:
    return {"vr": "IS", "Value": [int(value)]}


def open_sqlite(location: str, path: Path, replace_old: bool = False) -> SQLCatalog:
    """A catalog in the SQLite file ``path`` (made with its folder when missing)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CatalogError(
            f'Catalog "{location}" (the catalog setting): its folder cannot be made: {exc}'
        ) from exc

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(
            str(path), timeout=60.0, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA busy_timeout = 60000")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")  # a checkpoint syncs, not a commit
        connection.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        return connection

    return SQLCatalog(location, SQLITE, connect, replace_old)


def open_postgres(location: str, replace_old: bool = False) -> SQLCatalog:
    """A catalog in the PostgreSQL database at ``location``."""
    import psycopg

    def connect() -> Any:
        return psycopg.connect(location, autocommit=True, connect_timeout=10)

    return SQLCatalog(location, POSTGRES, connect, replace_old)
