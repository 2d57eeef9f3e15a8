"""A registry service's job cannot write, truncate or delete the node's files: only its own
output folder (Landlock), whether it works on the node's folders or reads the archive.

A real node on the embedded queue, dcmtk's ``storescu`` sending a series and ``storescp``
receiving the results. The service has two jobs: "first" writes a result file, "vandal"
(which depends on it) tries to damage the node, then writes its results with what
happened to each attempt in ImageComments.
"""

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from service_files import AddService

from dicomflow.cod import CODObject, list_series, list_studies
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from dicomflow.engine.series_archive import ArchiveScheduler, Consumers
from dicomflow.services.consumer import ServiceScheduler
from dicomflow.settings import build_settings
from support import StoreSCPPeer, storescu, wait_for

FIRST = """
import pathlib


def run(jobName, output_dir, **kwargs):
    pathlib.Path(output_dir, f"{jobName}.txt").write_text("a result of the first job")
"""

VANDAL = """
import json
import subprocess
import sys
import os
import shutil
import tempfile
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid


def run(params, input_dir, output_dir, **kwargs):
    datasets = [dcmread(path) for path in sorted(Path(input_dir).glob("*.dcm"))]
    data = Path(params["data"])
    [batch] = (data / "series" / "rounds").iterdir()
    attempts = {
        "journal": (data / "journal" / "segment.journal").unlink,
        "spool": lambda: (data / "series" / "spool" / "incoming" / "x.dcm").write_bytes(b"x"),
        "queue": lambda: os.truncate(data / "queue.db", 0),
        "the batch's job list": lambda: (batch / "jobs.json").open("a").write(" "),
        "the other job's output": lambda: shutil.rmtree(batch / "output" / "first"),
        "own inputs": lambda: next(Path(input_dir).glob("*.dcm")).unlink(),
        "the archive": lambda: shutil.rmtree(params["archive"]),
        "data directory": lambda: (data / "planted").mkdir(),
    }
    report = {}
    for what in params["attempts"]:
        try:
            attempts[what]()
            report[what] = "DAMAGED"
        except PermissionError:
            report[what] = "refused"
    with tempfile.NamedTemporaryFile() as scratch:
        scratch.write(b"temporary files still work")
    Path("scratch.bin").write_bytes(b"so does the working directory")
    for dataset in datasets:
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.ImageComments = json.dumps(report)
        dataset.save_as(Path(output_dir) / f"{dataset.SOPInstanceUID}.dcm")
"""

COMMON = ["journal", "spool", "queue", "the batch's job list", "data directory"]
ATTEMPTS = {
    "folders": [*COMMON, "the other job's output", "own inputs"],
    "archive": [*COMMON, "the archive"],
}


def start_node(tmp_path: Path, root: Path, storescp: StoreSCPPeer, datastore: Path | None) -> Node:
    settings = build_settings(
        port=0,
        data_directory=tmp_path / "data",
        endpoints=[storescp.endpoint()],
        queue_workers=1,
        series_quiet_period_s=0.3,
        export_backoff_s=0.1,
    )
    url = settings.resolved_queue_url()
    archive = ArchiveScheduler(str(datastore), url) if datastore is not None else None
    node = Node(None, settings, Consumers(ServiceScheduler(root, url), archive))
    node.start()
    return node


def archived(datastore: Path) -> int:
    return sum(
        len(CODObject(str(datastore), study, series, lock=False).list_instances())
        for study in list_studies(str(datastore))
        for series in list_series(str(datastore), study)
    )


@pytest.mark.parametrize("inputs", ["folders", "archive"])
def test_a_service_cannot_damage_the_node_and_its_results_still_arrive(
    inputs: str, tmp_path: Path, root: Path, add_service: AddService, storescp: StoreSCPPeer
) -> None:
    data, datastore = tmp_path / "data", tmp_path / "archive"
    params = {"data": str(data), "archive": str(datastore), "attempts": ATTEMPTS[inputs]}
    first = {"jobName": "first", "worker": "work.run", "callback": "always"}
    vandal = {"jobName": "vandal", "worker": "vandal.run", "callback": "always"}
    vandal |= {"dependsOn": "first", "params": params}
    add_service("svc", [first, vandal], module={"work.py": FIRST, "vandal.py": VANDAL})
    node = start_node(tmp_path, root, storescp, datastore if inputs == "archive" else None)
    try:
        storescu(node.port, write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "ct"))
        wait_for(lambda: len(storescp.files()) == 2, 60, "the vandal's results at storescp")
        wait_for(lambda: not any((data / "series" / "rounds").iterdir()), 30, "the batch to end")
    finally:
        node.stop()

    reports = [json.loads(pydicom.dcmread(path).ImageComments) for path in storescp.files()]
    assert reports == [dict.fromkeys(ATTEMPTS[inputs], "refused")] * 2
    assert (data / "journal" / "segment.journal").stat().st_size > 0
    assert (data / "queue.db").stat().st_size > 0
    assert not (data / "series" / "spool" / "incoming" / "x.dcm").exists()
    assert not (data / "planted").exists()
    assert list((data / "series" / "failed").glob("*")) == []
    if inputs == "archive":
        assert archived(datastore) == 2


NO_LANDLOCK = """
import logging, sys
from dicomflow.queue import landlock
from dicomflow.services.runner import run_service_job


def no_landlock(kernel):
    raise landlock.LandlockUnavailable("this kernel has no Landlock")


logging.basicConfig(level=logging.WARNING)
landlock._Kernel.abi = no_landlock
module_dir, data = sys.argv[1:]
service = {"name": "svc", "worker": "planter.run", "module_dir": module_dir}
run_service_job(service=service, jobName="plant", output_root=f"{data}/out", protected=[data])
"""

PLANTER = """
import pathlib


def run(output_dir, **kwargs):
    pathlib.Path(output_dir, "result.txt").write_text("done")
    pathlib.Path(output_dir).parents[1].joinpath("planted").write_text("unprotected")
"""


def test_without_landlock_a_service_job_runs_unprotected_with_a_warning(tmp_path: Path) -> None:
    module_dir, data = tmp_path / "module", tmp_path / "data"
    module_dir.mkdir()
    (module_dir / "planter.py").write_text(PLANTER)
    command = [sys.executable, "-c", NO_LANDLOCK, str(module_dir), str(data)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert "not write-protected: this kernel has no Landlock" in result.stderr
    assert (data / "out" / "plant" / "result.txt").read_text() == "done"
    assert (data / "planted").read_text() == "unprotected"
