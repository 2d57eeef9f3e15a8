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

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    series_rows,
)
from dicomflow.cod.catalog_types import EVERYWHERE, Level, LocatedInstance, Scope, redacted
from dicomflow.cod.query import SeriesDocument
from dicomflow.dicom.matching import DicomJson, Query
from dicomflow.errors import CatalogError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
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
    "irregular", "instance_count", "attributes",
)  # fmt: skip
INSTANCE_FIELDS = (
    "study_uid", "series_uid", "sop_uid", "sop_class_uid", "transfer_syntax", "position",
    *(column.name for column in INSTANCE_COLUMNS), "irregular", "delta",
)  # fmt: skip
PATIENT_TAGS = ("0010", "00080005")
LOCATE_BATCH = 200


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
            instance_count INTEGER NOT NULL, attributes {t} NOT NULL,
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
    indexed = ["patient_key", "series_uid", *(c.name for c in SERIES_COLUMNS)]
    statements += [
        f"CREATE INDEX IF NOT EXISTS series_{name} ON series ({name})" for name in indexed
    ]
    statements += [
        f"CREATE INDEX IF NOT EXISTS instances_{name} ON instances ({name})"
        for name in ("sop_uid", "sop_class_key")
    ]
    return statements


class SQLCatalog:
    """A :class:`~dicomflow.cod.catalog.Catalog` over one SQL connection (shared by the
    threads of a process, one statement at a time)."""

    def __init__(self, location: str, dialect: Dialect, connect: Callable[[], Any]) -> None:
        self.location = location
        self.dialect = dialect
        self._connect = connect
        self._lock = threading.RLock()
        self._connection: Any = None
        if not self._has_schema():
            self._create_schema()

    def _has_schema(self) -> bool:
        """Whether the tables are there (every archive job opens the catalog: most
        openings need no write)."""
        try:
            rows = self._execute("SELECT value FROM catalog_meta WHERE name = 'schema'")
        except CatalogError:
            return False
        return bool(rows) and rows[0][0] == SCHEMA_VERSION

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
        recorded = 0
        with self._transaction():
            for document in documents:
                recorded += self._record_one(document, keep_larger)
        return recorded

    def _record_one(self, document: SeriesDocument, keep_larger: bool) -> bool:
        study_uid, series_uid = document.study_uid, document.series_uid
        if keep_larger and self._instance_count(study_uid, series_uid) > len(document.instances):
            return False
        rows = series_rows(document)
        before = self._patient_of(study_uid, series_uid)
        self._delete_series(study_uid, series_uid)
        if rows is not None:
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
        with self._transaction():
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
        values += [int(s.irregular), s.instance_count, s.attributes]
        self._execute(_insert_sql("series", SERIES_FIELDS), values)
        instances = [[s.study_uid, s.series_uid, *_instance_values(i)] for i in rows.instances]
        self._executemany(_insert_sql("instances", INSTANCE_FIELDS), instances)

    def _refresh_study(self, study_uid: str) -> None:
        rows = self._execute(
            "SELECT series_uid, modality_first, instance_count, irregular, patient_key "
            "FROM series WHERE study_uid = ? ORDER BY series_uid",
            [study_uid],
        )
        self._execute("DELETE FROM studies WHERE study_uid = ?", [study_uid])
        if not rows:
            return
        modalities = sorted({str(row[1]) for row in rows if row[1]})
        values = [study_uid, rows[0][4], rows[0][0], len(rows), sum(row[2] for row in rows)]
        values += [json.dumps(modalities), int(any(row[3] for row in rows))]
        fields: tuple[str, ...] = ("study_uid", "patient_key", "first_series_uid", "series_count")
        fields += ("instance_count", "modalities", "irregular")
        self._execute(_insert_sql("studies", fields), values)

    def _refresh_patient(self, patient_key: str) -> None:
        rows = self._execute(
            "SELECT study_uid, series_uid, instance_count, irregular FROM series "
            "WHERE patient_key = ? ORDER BY study_uid, series_uid",
            [patient_key],
        )
        self._execute("DELETE FROM patients WHERE patient_key = ?", [patient_key])
        if not rows:
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
        self._execute(_insert_sql("patients", fields), values)

    # -- reading ---------------------------------------------------------------------

    def search(self, level: Level, query: Query, scope: Scope = EVERYWHERE) -> list[DicomJson]:
        results: list[DicomJson] = []
        skipped = 0
        for row in self._matching(level, query, scope, paged=True):
            if skipped < query.offset:
                skipped += 1
                continue
            results.append(_result(level, row))
            if query.limit is not None and len(results) >= query.limit:
                break
        return results

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

    def _matching(self, level: Level, query: Query, scope: Scope, paged: bool) -> Iterator[Any]:
        """The rows of the matching entities, in order (see :func:`_select`)."""
        found = pushdown(query, LEVEL_COLUMNS[level], self.dialect.wildcard)
        sql, params = _select(level, found, scope)
        wanted = query.offset + query.limit if paged and query.limit is not None else None
        for row in self._pages(sql, params, wanted):
            if (found.exact and not row[3]) or self._check(level, query, row):
                yield row

    def _pages(self, sql: str, params: list[Any], wanted: int | None) -> Iterator[Any]:
        """The rows of ``sql``: all at once, or in growing pages from ``wanted`` on."""
        if wanted is None:
            yield from self._execute(sql, params)
            return
        size, start = max(wanted, 1), 0
        while True:
            rows = self._execute(f"{sql} LIMIT ? OFFSET ?", [*params, size, start])
            yield from rows
            if len(rows) < size:
                return
            start, size = start + size, size * 2

    def _check(self, level: Level, query: Query, row: Any) -> bool:
        """:meth:`Query.matches`, for a row SQL could not decide."""
        if level in (Level.IMAGE, Level.SERIES):
            return query.matches(_result(level, row))
        computed = _computed(level, row)
        column = "study_uid" if level is Level.STUDY else "patient_key"
        series = self._execute(f"SELECT attributes FROM series WHERE {column} = ?", [row[0]])
        return any(query.matches({**json.loads(s[0]), **computed}) for s in series)

    # -- connection ------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._execute("BEGIN" if self.dialect is POSTGRES else "BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._execute_quietly("ROLLBACK")
                raise
            self._execute("COMMIT")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock, self._errors():
            cursor = self._cursor()
            cursor.execute(self._sql(sql), params)
            return list(cursor.fetchall()) if cursor.description else []

    def _executemany(self, sql: str, rows: list[list[Any]]) -> None:
        with self._lock, self._errors():
            self._cursor().executemany(self._sql(sql), rows)

    def _execute_quietly(self, sql: str) -> None:
        try:
            self._execute(sql)
        except CatalogError as exc:
            logger.warning("catalog: %s failed: %s", sql, exc)

    def _cursor(self) -> Any:
        if self._connection is None or getattr(self._connection, "closed", False):
            self._connection = self._connect()
        return self._connection.cursor()

    def _sql(self, sql: str) -> str:
        return sql if self.dialect is SQLITE else sql.replace("?", "%s")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, _postgres_error()) as exc:
            if self.dialect is POSTGRES and getattr(self._connection, "broken", False):
                self._connection = None  # reconnect on the next statement
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


def _insert_sql(table: str, fields: Sequence[str]) -> str:
    marks = ", ".join("?" for _ in fields)
    return f"INSERT INTO {table} ({', '.join(fields)}) VALUES ({marks})"


def _select(level: Level, found: Filter, scope: Scope) -> tuple[str, list[Any]]:
    """The SELECT of one level. Its rows start with the entity's keys (up to 3), the
    irregular flag (3), then what :func:`_result` reads."""
    irregular = "s.irregular = 1 OR i.irregular = 1" if level is Level.IMAGE else "s.irregular = 1"
    where = f"({found.where()} OR {irregular})" if found.conditions else "1 = 1"
    params = list(found.params)
    for column, value in (("s.study_uid", scope.study_uid), ("s.series_uid", scope.series_uid)):
        if value is not None:
            where += f" AND {column} = ?"
            params.append(value)
    if level is Level.IMAGE:
        return (
            "SELECT i.study_uid, i.series_uid, i.sop_uid, s.irregular + i.irregular, "
            "s.attributes, i.delta, 0, i.sop_class_uid, i.transfer_syntax "
            "FROM instances i JOIN series s "
            "ON s.study_uid = i.study_uid AND s.series_uid = i.series_uid "
            f"WHERE {where} ORDER BY i.study_uid, i.series_uid, i.position, i.sop_uid",
            params,
        )
    if level is Level.SERIES:
        return (
            "SELECT s.study_uid, s.series_uid, NULL, s.irregular, s.attributes, "
            f"s.instance_count FROM series s WHERE {where} ORDER BY s.study_uid, s.series_uid",
            params,
        )
    if level is Level.STUDY:
        matched = (
            ""
            if where == "1 = 1"
            else f"WHERE st.study_uid IN (SELECT s.study_uid FROM series s WHERE {where})"
        )
        return (
            "SELECT st.study_uid, NULL, NULL, st.irregular, f.attributes, st.series_count, "
            "st.instance_count, st.modalities FROM studies st JOIN series f "
            "ON f.study_uid = st.study_uid AND f.series_uid = st.first_series_uid "
            f"{matched} ORDER BY st.study_uid",
            params,
        )
    matched = (
        ""
        if where == "1 = 1"
        else f"WHERE p.patient_key IN (SELECT s.patient_key FROM series s WHERE {where})"
    )
    return (
        "SELECT p.patient_key, NULL, NULL, p.irregular, f.attributes, p.study_count, "
        "p.series_count, p.instance_count FROM patients p JOIN series f "
        "ON f.study_uid = p.first_study_uid AND f.series_uid = p.first_series_uid "
        f"{matched} ORDER BY p.patient_key",
        params,
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
        modalities = json.loads(row[7])
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


def open_sqlite(location: str, path: Path) -> SQLCatalog:
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
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    return SQLCatalog(location, SQLITE, connect)


def open_postgres(location: str) -> SQLCatalog:
    """A catalog in the PostgreSQL database at ``location``."""
    import psycopg

    def connect() -> Any:
        return psycopg.connect(location, autocommit=True, connect_timeout=10)

    return SQLCatalog(location, POSTGRES, connect)
