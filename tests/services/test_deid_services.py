"""A registry service marked ``"deidentify": true``: the results the node sends from its
output folder reach a plain endpoint de-identified, with the node's pseudonyms; a refused
instance fails the job (nothing of it sent, the series' instances kept)."""

from pathlib import Path

import pydicom
from service_files import ServiceFolder

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.deidentification import deidentifier_from_settings
from dicomflow.engine.node import Node
from dicomflow.services.consumer import ServiceScheduler
from dicomflow.services.install import install
from dicomflow.settings import build_settings
from support import StoreSCPPeer, storescu, wait_for

COPY = """
import shutil
from pathlib import Path


def run(jobName, headers, params, added_params, input_dir, output_dir, **kwargs):
    for path in Path(input_dir).glob("*.dcm"):
        shutil.copy(path, Path(output_dir) / path.name)
"""
PATIENT_ID = "SERVICE-PAT-5521"


def start_copying_node(
    tmp_path: Path, service_folder: ServiceFolder, storescp: StoreSCPPeer
) -> Node:
    """A node running the service COPY, marked deidentify, with ``storescp`` as endpoint."""
    job = {"jobName": "copy", "worker": "work.run", "callback": "always", "deidentify": True}
    root = tmp_path / "services"
    install("copy", service_folder("copy", job, module={"work.py": COPY}), root)
    return start_node(tmp_path, root, storescp.endpoint())


def start_node(tmp_path: Path, root: Path, endpoint: str) -> Node:
    settings = build_settings(
        port=0,
        data_directory=tmp_path / "data",
        endpoints=[endpoint],
        services_directory=root,
        queue_url=f"sqlite:///{tmp_path / 'data' / 'queue.db'}",
        queue_workers=1,
        series_quiet_period_s=0.3,
        export_backoff_s=0.1,
    )
    node = Node(None, settings, ServiceScheduler(root, settings.queue_url or ""))
    node.start()
    return node


def test_a_service_marked_deidentify_sends_pseudonyms(
    tmp_path: Path, service_folder: ServiceFolder, storescp: StoreSCPPeer
):
    node = start_copying_node(tmp_path, service_folder, storescp)
    try:
        series = make_ct_series(2, patient_id=PATIENT_ID)
        storescu(node.port, write_series(series, tmp_path / "ct"))
        wait_for(lambda: len(storescp.files()) == 2, 60, "the service's results")
        deidentifier = deidentifier_from_settings(node.settings)
        expected = {deidentifier.identity(dataset).sop_instance_uid for dataset in series}
        received = [pydicom.dcmread(path) for path in storescp.files()]
        assert {dataset.SOPInstanceUID for dataset in received} == expected
        assert {dataset.PatientID for dataset in received} == {
            deidentifier.identity(series[0]).patient_id
        }
        for path in storescp.files():
            assert PATIENT_ID.encode() not in path.read_bytes()
    finally:
        node.stop()


def test_a_refused_instance_fails_the_service_job(
    tmp_path: Path, service_folder: ServiceFolder, storescp: StoreSCPPeer
):
    node = start_copying_node(tmp_path, service_folder, storescp)
    try:
        series = make_ct_series(1, patient_id=PATIENT_ID)
        series[0].BurnedInAnnotation = "YES"
        storescu(node.port, write_series(series, tmp_path / "ct"))
        failed = tmp_path / "data" / "series" / "failed"
        wait_for(lambda: failed.is_dir() and any(failed.iterdir()), 60, "the round to fail")
        [kept] = list(failed.iterdir())
        assert len(list((kept / "instances").glob("*.dcm"))) == 1
        assert "BurnedInAnnotation is YES" in (kept / "error.json").read_text()
        assert storescp.files() == []
    finally:
        node.stop()
