"""Two archive writers (processes) sharing one PostgreSQL catalog; QIDO-RS answers both."""

import multiprocessing
from pathlib import Path

from web_support import serve_web

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.series_archive import archive_series
from dicomflow.settings import build_settings
from support import PostgresServer


def _archive(folder: str, datastore: str, catalog: str) -> dict[str, int]:
    return archive_series(input_dir=folder, datastore=datastore, catalog=catalog, thumbnail=False)


def test_two_writers_share_one_postgresql_catalog(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    catalog = postgres_server.database()
    datastore = str(tmp_path / "archive")
    folders = []
    for index in range(2):
        series = make_ct_series(3, rows=4, columns=4, patient_id=f"W{index}", seed=index)
        folders.append(str(write_series(series, tmp_path / f"in{index}")[0].parent))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        done = pool.starmap(_archive, [(folder, datastore, catalog) for folder in folders])
    assert [totals["new"] for totals in done] == [3, 3]
    assert not (tmp_path / "archive" / "catalog.sqlite").exists()
    settings = build_settings(
        data_directory=tmp_path / "data", archive_datastore=datastore, catalog=catalog
    )
    web = serve_web(settings)
    try:
        with web.client() as http:
            studies = http.get("/dicomweb/studies").json()
            instances = http.get("/dicomweb/instances", params={"PatientID": "W1"}).json()
    finally:
        web.server.stop()
    assert sorted(s["00100020"]["Value"][0] for s in studies) == ["W0", "W1"]
    assert len(instances) == 3
