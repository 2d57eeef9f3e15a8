"""A dashboard with something on every page: a locked archived series, a job, a
service, an outbox item and a patient waiting in the spool (long values included)."""

import json
from dataclasses import dataclass
from pathlib import Path

from web_support import WebNode

from dicomflow.cod import CODObject
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.keys import value_key
from dicomflow.engine.series_archive import archive_series
from dicomflow.queue.backend import open_backend
from dicomflow.queue.job import Job
from dicomflow.settings import build_settings

NOOP = "dicomflow.queue.function:check_function_name"
LONG = "a-rather-long-name-without-any-space-" * 3


@dataclass(frozen=True)
class PopulatedWeb:
    """The running dashboard and the path of each of its pages."""

    web: WebNode
    pages: list[str]


def populate(tmp_path: Path, web_for) -> PopulatedWeb:  # type: ignore[no-untyped-def]
    data, archive = tmp_path / "data", str(tmp_path / "archive")
    settings = build_settings(
        data_directory=data,
        archive_datastore=archive,
        services_directory=_service(tmp_path / "services"),
        endpoints=["PACS@127.0.0.1:11112"],
    )
    study, series = _locked_series(tmp_path, archive)
    _outbox_item(data)
    _waiting_patient(data)
    web = web_for(settings=settings)
    job = _job(web)
    series_page = f"/archive/studies/{study}/series/{series}"
    pages = ["/", "/patients", "/jobs", f"/jobs/{job}", "/services", "/outbox", "/archive"]
    pages += [f"/archive/studies/{study}", series_page, f"{series_page}/unlock"]
    return PopulatedWeb(web, pages)


def _locked_series(tmp_path: Path, archive: str) -> tuple[str, str]:
    datasets = make_ct_series(2, rows=8, columns=8, patient_id="P-1")
    for dataset in datasets:
        dataset.SeriesDescription = LONG[:64]
    folder = write_series(datasets, tmp_path / "series")[0].parent
    archive_series(input_dir=str(folder), datastore=archive)
    study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    CODObject(datastore_path=archive, study_uid=study, series_uid=series, lock=True)
    return study, series


def _service(root: Path) -> Path:
    folder = root / "registry" / "livers"
    folder.mkdir(parents=True)
    job = {"jobName": LONG, "worker": "segmenter.run", "params": {"threshold": LONG}}
    (folder / "settings.json").write_text(json.dumps([{**job, "description": LONG}]))
    return root


def _outbox_item(data: Path) -> None:
    item = data / "outbox" / f"round-{LONG}"
    item.mkdir(parents=True)
    destination = {"kind": "dicom", "ip": "127.0.0.1", "port": 11112, "ae_title": "PACS"}
    (item / "destination.json").write_text(json.dumps(destination))
    (item / "1.2.3.dcm").write_bytes(b"x" * 10)


def _waiting_patient(data: Path) -> None:
    folder = data / "spool" / "incoming" / value_key("PATIENT-1")
    folder.mkdir(parents=True)
    (folder / "1.2.3.dcm").write_bytes(b"DICM")


def _job(web: WebNode) -> str:
    backend = open_backend(web.settings.resolved_queue_url())
    try:
        job = Job(function=NOOP, name=LONG, kwargs={"note": LONG}, meta={"service": "livers"})
        return backend.enqueue(job).id
    finally:
        backend.close()
