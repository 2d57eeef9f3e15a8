"""A real PACS on both sides: Orthanc pushes a series to the node (C-STORE), the pipeline
runs, and the results go back into Orthanc (C-STORE), checked through its REST API.

The copy pipeline keeps the SOP instance UIDs, so Orthanc runs with
``OverwriteInstances``: a result replaces its original, marked by ImageComments."""

import json
from io import BytesIO
from pathlib import Path

import pydicom
from sample_pipelines import MARK, CTCopyPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from support import OrthancPeer, free_port, wait_for


def test_orthanc_sends_a_series_and_gets_the_results_back(make_node, tmp_path: Path):
    node_port = free_port()
    pacs = OrthancPeer(
        tmp_path / "orthanc", modalities={"dicomflow": f"DICOMFLOW@127.0.0.1:{node_port}"}
    )
    try:
        make_node(CTCopyPipeline, port=node_port, endpoints=[pacs.endpoint()])
        files = write_series(make_ct_series(12, rows=64, columns=64), tmp_path / "ct")
        sent = {str(pydicom.dcmread(path).SOPInstanceUID): path for path in files}
        ids = [pacs.rest("POST", "/instances", path.read_bytes())["ID"] for path in files]
        pacs.rest("POST", "/modalities/dicomflow/store", json.dumps(ids))

        def results() -> list[str]:
            found = []
            for orthanc_id in pacs.rest("GET", "/instances"):
                tags = pacs.rest("GET", f"/instances/{orthanc_id}/simplified-tags")
                if tags.get("ImageComments") == MARK:
                    found.append(orthanc_id)
            return found

        wait_for(lambda: len(results()) == len(sent), timeout_s=60, what="results in Orthanc")
        for orthanc_id in results():
            result = pydicom.dcmread(BytesIO(pacs.rest("GET", f"/instances/{orthanc_id}/file")))
            original = pydicom.dcmread(sent[str(result.SOPInstanceUID)])
            assert (result.pixel_array == original.pixel_array).all()
    finally:
        pacs.stop()
