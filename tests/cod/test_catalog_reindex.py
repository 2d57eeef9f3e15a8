"""``dicomflow cod ingest`` keeps the catalog; ``dicomflow cod reindex`` rebuilds it from the
datastore (SQLite beside the datastore, or PostgreSQL) and forgets series that are gone."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dicomflow.cod.catalog import Level, open_catalog
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.matching import Query, parse_query
from support import PostgresServer

DICOMFLOW = str(Path(sys.executable).with_name("dicomflow"))


def cod(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DICOMFLOW_")}
    result = subprocess.run(
        [DICOMFLOW, "cod", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


@pytest.fixture
def ingested(tmp_path: Path) -> Path:
    """Three series (two patients) ingested into ``tmp_path/ds``."""
    for index, patient in enumerate(("R1", "R1", "R2")):
        series = make_ct_series(2, rows=4, columns=4, patient_id=patient, seed=index)
        write_series(series, tmp_path / "in" / str(index))
    result = cod("ingest", str(tmp_path / "in"), "-d", "ds", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "ds"


def _series_folders(datastore: Path) -> list[Path]:
    return sorted(path for path in datastore.glob("studies/*/series/*") if path.is_dir())


def test_ingest_records_and_reindex_rebuilds_the_sqlite_catalog(ingested: Path) -> None:
    catalog = open_catalog(str(ingested / "catalog.sqlite"))
    assert len(catalog.search(Level.SERIES, Query())) == 3
    assert len(catalog.search(Level.IMAGE, parse_query([("PatientID", "R1")]))) == 4
    gone = _series_folders(ingested)[0]
    shutil.rmtree(gone)
    result = cod("reindex", "ds", cwd=ingested.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "2 series found, 2 recorded, 1 forgotten, 0 error(s)"
    )
    found = {s["0020000E"]["Value"][0] for s in catalog.search(Level.SERIES, Query())}
    assert found == {folder.name for folder in _series_folders(ingested)}
    (ingested / "catalog.sqlite").unlink()  # a catalog lost: rebuilt from scratch
    for suffix in ("-wal", "-shm"):
        (ingested / f"catalog.sqlite{suffix}").unlink(missing_ok=True)
    catalog.close()
    assert cod("reindex", "ds", cwd=ingested.parent).returncode == 0
    rebuilt = open_catalog(str(ingested / "catalog.sqlite"))
    assert len(rebuilt.search(Level.IMAGE, Query())) == 4
    rebuilt.close()


def test_reindex_into_postgresql(ingested: Path, postgres_server: PostgresServer) -> None:
    url = postgres_server.database()
    result = cod("reindex", "ds", "--catalog", url, cwd=ingested.parent)
    assert result.returncode == 0, result.stderr
    catalog = open_catalog(url)
    patients = catalog.search(Level.PATIENT, Query())
    assert [p["00100020"]["Value"] for p in patients] == [["R1"], ["R2"]]
    assert [p["00201204"]["Value"] for p in patients] == [[4], [2]]
    catalog.close()


def test_bad_catalogs_and_datastores_get_one_line_errors(ingested: Path) -> None:
    cwd = ingested.parent
    bad = cod("reindex", "ds", "--catalog", "mysql://x/y", cwd=cwd)
    assert bad.returncode == 2 and "catalog setting" in bad.stderr
    down = cod("reindex", "ds", "--catalog", "postgresql://u:pw@127.0.0.1:1/x", cwd=cwd)
    assert down.returncode == 2 and "catalog setting" in down.stderr and "pw" not in down.stderr
    missing = cod("reindex", "nowhere", cwd=cwd)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    remote = cod("reindex", "memory://x", cwd=cwd)
    assert remote.returncode == 2 and "--catalog" in remote.stderr
