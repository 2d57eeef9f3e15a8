"""The pipeline library's outputs and DICOM helpers, with only the import root changed:
``dicomflow.server.output``, ``dicomflow.dicom.dimse``, ``dicomflow.lib.io``.

The pipelines (``dicomnode_output_pipelines.py``) run in a real node (worker processes,
outbox) against dcmtk's ``storescp``.
"""

import json
import os
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomnode_output_pipelines import (
    CustomSavePipeline,
    DefaultFilePipeline,
    HostileUIDPipeline,
    MultiPipeline,
    OutputPipeline,
    RaisingPipeline,
    RefusingPipeline,
    StoreNodePipeline,
)
from pydicom import Dataset

from dicomflow.dicom.dimse import (
    Address,
    QueryLevels,
    create_query_dataset,
    send_images,
    send_move,
)
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.outbox import copy_files
from dicomflow.errors import InvalidKeyError
from dicomflow.lib.exceptions import CouldNotCompleteDIMSEMessage
from dicomflow.lib.io import load_dicom, load_dicoms, save_dicom
from dicomflow.server.output import (
    DicomOutput,
    FileOutput,
    MultiOutput,
    NoOutput,
)
from support import OrthancPeer, StoreSCPPeer, free_port, storescu, wait_for

# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def pacs(tmp_path: Path) -> Any:
    """storescp as PACS, recording the calling AE title of each instance it stores."""
    aes = tmp_path / "calling-aes.txt"
    peer = StoreSCPPeer(tmp_path / "pacs", options=("+xa", "-xcr", f"echo #a >> {aes}"))
    (tmp_path / "peer.json").write_text(json.dumps(["127.0.0.1", peer.port, peer.ae_title]))
    peer.calling_aes = aes  # type: ignore[attr-defined]
    yield peer
    peer.stop()


def run_round(make_node: Any, pipeline: type, tmp_path: Path, count: int = 3) -> Any:
    for folder in ("out", "records"):  # a round cannot make new entries beside the data
        (tmp_path / folder).mkdir(exist_ok=True)
    node = make_node(pipeline)
    series = make_ct_series(count, rows=8, columns=8, patient_id=pipeline.__name__)
    storescu(node.port, write_series(series, tmp_path / "sent"))
    return node, series


def uids(datasets: list[Dataset]) -> set[str]:
    return {str(ds.SOPInstanceUID) for ds in datasets}


def uid_tree(root: Path, series: list[Dataset]) -> set[Path]:
    return {
        root / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        for ds in series
    }


# -- in a running node ---------------------------------------------------------------------


def test_dicom_output_with_the_original_signature_delivers_as_its_ae_title(
    make_node: Any, pacs: StoreSCPPeer, tmp_path: Path
) -> None:
    node, series = run_round(make_node, OutputPipeline, tmp_path)
    wait_for(lambda: len(pacs.files()) == 3, 30, "the results at the PACS")
    assert uids([pydicom.dcmread(p) for p in pacs.files()]) == uids(series)
    wait_for(lambda: node.counters.delivered == 1, 10, "the outbox to report it")
    assert set(pacs.calling_aes.read_text().split()) == {"PLUSONE"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("pipeline", [DefaultFilePipeline, StoreNodePipeline])
def test_file_output_writes_study_series_instance_files(
    make_node: Any, tmp_path: Path, pipeline: type
) -> None:
    _, series = run_round(make_node, pipeline, tmp_path)
    out = tmp_path / "out"
    wait_for(lambda: len(list(out.glob("*/*/*.dcm"))) == 3, 30, "the files")
    assert set(out.glob("*/*/*.dcm")) == uid_tree(out, series)
    assert uids(load_dicoms(out)) == uids(series)


def test_file_output_calls_a_saving_function_with_path_and_dataset(
    make_node: Any, tmp_path: Path
) -> None:
    node, series = run_round(make_node, CustomSavePipeline, tmp_path)
    out = tmp_path / "out"
    wait_for(lambda: node.counters.rounds_succeeded == 1, 30, "the round")
    assert sorted(p.name for p in out.iterdir()) == [
        "slice-001.dcm",
        "slice-002.dcm",
        "slice-003.dcm",
    ]
    assert load_dicom(out / "slice-002.dcm").SOPInstanceUID == series[1].SOPInstanceUID


def test_multi_output_sends_files_and_a_custom_output(
    make_node: Any, pacs: StoreSCPPeer, tmp_path: Path
) -> None:
    _, series = run_round(make_node, MultiPipeline, tmp_path)
    wait_for(lambda: len(pacs.files()) == 3, 30, "the results at the PACS")
    wait_for(lambda: len(list((tmp_path / "out").glob("*/*/*.dcm"))) == 3, 30, "the files")
    assert set(json.loads((tmp_path / "records" / "recorded.json").read_text())) == uids(series)


@pytest.mark.parametrize(
    ("pipeline", "cause"),
    [
        (RefusingPipeline, "RefusingOutput.send() returned False"),
        (RaisingPipeline, "RaisingOutput.send() raised ConnectionError: the RIS is down"),
        (HostileUIDPipeline, 'StudyInstanceUID "../../../etc" is not a valid DICOM UID'),
    ],
)
def test_a_failing_output_fails_the_round_which_keeps_its_inputs(
    make_node: Any, pacs: StoreSCPPeer, tmp_path: Path, pipeline: type, cause: str
) -> None:
    node, series = run_round(make_node, pipeline, tmp_path)
    wait_for(lambda: node.counters.rounds_failed == 1, 30, "the round to fail")
    [failed] = (tmp_path / "data" / "failed").iterdir()
    assert cause in json.loads((failed / "error.json").read_text())["error"]
    assert uids([pydicom.dcmread(p) for p in failed.glob("instances/*")]) == uids(series)
    assert pacs.files() == []  # the round's DicomOutput is not sent either
    assert list((tmp_path / "out").iterdir()) == [] and not list(tmp_path.rglob("etc"))


# -- the helpers, called directly --------------------------------------------------------------


def test_send_images_delivers_and_raises_on_a_closed_port(
    pacs: StoreSCPPeer, tmp_path: Path
) -> None:
    series = make_ct_series(2, rows=8, columns=8)
    assert send_images("SENDER", Address("127.0.0.1", pacs.port, "PACS"), series) == 0x0000
    assert uids([pydicom.dcmread(p) for p in pacs.files()]) == uids(series)
    with pytest.raises(CouldNotCompleteDIMSEMessage):
        send_images("SENDER", Address("127.0.0.1", free_port(), "PACS"), series)
    with pytest.raises(TypeError):
        send_images("SENDER", Address("127.0.0.1", pacs.port, "PACS"), series[0])  # type: ignore[arg-type]


def test_send_images_calls_the_error_callback_for_an_instance_the_peer_refuses(
    pacs: StoreSCPPeer,
) -> None:
    good, odd = make_ct_series(2, rows=8, columns=8)
    odd.SOPClassUID = odd.file_meta.MediaStorageSOPClassUID = "1.2.3.4.5"  # no storage class
    address = Address("127.0.0.1", pacs.port, "PACS")
    with pytest.raises(CouldNotCompleteDIMSEMessage, match="did not store 1 of 2"):
        send_images("SENDER", address, [good, odd])
    refused: list[tuple[Address, Dataset, Dataset]] = []
    send_images("SENDER", address, [good, odd], lambda *args: refused.append(args))
    assert [(a, str(ds.SOPInstanceUID)) for a, _, ds in refused] == [(address, odd.SOPInstanceUID)]
    assert "the peer accepts nothing for 1.2.3.4.5" in refused[0][1].ErrorComment
    assert uids([pydicom.dcmread(p) for p in pacs.files()]) == {str(good.SOPInstanceUID)}


def test_send_move_has_the_pacs_store_a_patient_to_the_caller(
    pacs: StoreSCPPeer, tmp_path: Path
) -> None:
    orthanc = OrthancPeer(tmp_path / "orthanc", modalities={"sink": f"SINK@127.0.0.1:{pacs.port}"})
    try:
        address = Address("127.0.0.1", orthanc.dicom_port, orthanc.ae_title)
        series = make_ct_series(2, rows=8, columns=8, patient_id="MOVE-ME")
        send_images("SINK", address, series)
        identifier = create_query_dataset(QueryLevels.PATIENT, PatientID="MOVE-ME")
        send_move("SINK", address, identifier)
        assert uids([pydicom.dcmread(p) for p in pacs.files()]) == uids(series)
        with pytest.raises(CouldNotCompleteDIMSEMessage, match="aborted by the peer"):
            send_move("NOBODY", address, identifier)  # an AE title Orthanc does not know
    finally:
        orthanc.stop()
    with pytest.raises(CouldNotCompleteDIMSEMessage):
        send_move("SINK", Address("127.0.0.1", free_port(), "PACS"), identifier)


def test_direct_send_of_the_original_outputs(pacs: StoreSCPPeer, tmp_path: Path) -> None:
    series = make_ct_series(2, rows=8, columns=8)
    address = Address("127.0.0.1", pacs.port, "PACS")
    assert DicomOutput([(address, series)], "PIPELINE_AE").send() is True
    assert len(pacs.files()) == 2
    assert (
        DicomOutput([(Address("127.0.0.1", free_port(), "WrongAE"), series)], "X").send() is False
    )
    assert FileOutput([(tmp_path / "files", series)]).send() is True
    assert set((tmp_path / "files").glob("*/*/*.dcm")) == uid_tree(tmp_path / "files", series)
    assert MultiOutput([NoOutput(), NoOutput()]).send() is True


def test_save_dataset_refuses_a_uid_that_would_leave_the_folder(tmp_path: Path) -> None:
    [dataset] = make_ct_series(1, rows=8, columns=8)
    dataset.SeriesInstanceUID = "/etc/passwd"
    with pytest.raises(InvalidKeyError, match='SeriesInstanceUID "/etc/passwd"'):
        FileOutput([(tmp_path, [dataset])]).send()
    assert list(tmp_path.iterdir()) == []


def test_save_and_load_dicom(tmp_path: Path) -> None:
    [dataset] = make_ct_series(1, rows=8, columns=8)
    path = save_dicom(tmp_path / "a" / "b" / "one.dcm", dataset)
    assert load_dicom(str(path)).SOPInstanceUID == dataset.SOPInstanceUID
    with pytest.raises(FileExistsError):
        save_dicom(path, dataset, overwrite=False)
    with pytest.raises(IsADirectoryError):
        load_dicom(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_dicom(tmp_path / "missing.dcm")
    in_folder = save_dicom(tmp_path, dataset)  # a folder: study/series/instance.dcm inside
    assert in_folder == next(iter(uid_tree(tmp_path, [dataset])))
    (tmp_path / "notes.txt").write_text("not DICOM")
    assert [str(ds.SOPInstanceUID) for ds in load_dicoms(tmp_path)] == 2 * [
        str(dataset.SOPInstanceUID)
    ]
    assert os.path.isfile(in_folder)


def test_save_dicom_as_saving_function_files_into_the_uid_layout(tmp_path: Path) -> None:
    """storeNode.py's ``FileOutput([(folder, datasets)], saving_function=save_dicom)``."""
    series = make_ct_series(2, rows=8, columns=8)
    assert FileOutput([(tmp_path, series)], saving_function=save_dicom).send() is True
    assert set(tmp_path.glob("*/*/*.dcm")) == uid_tree(tmp_path, series)


def test_the_outbox_refuses_a_file_layout_that_is_not_made_of_uids(tmp_path: Path) -> None:
    source = tmp_path / "1.2.3.dcm"
    source.write_bytes(b"result")
    for layout in ("../../1.2.3.dcm", "1.2/../1.2.3.dcm", "/etc/1.2.3.dcm", "1.2/1.3/x.dcm"):
        with pytest.raises(InvalidKeyError):
            copy_files(tmp_path / "out", [source], {"1.2.3.dcm": layout})
    assert not (tmp_path / "out").exists()
    copy_files(tmp_path / "out", [source], {"1.2.3.dcm": "1.2/1.2.4/1.2.3.dcm"})
    assert (tmp_path / "out" / "1.2" / "1.2.4" / "1.2.3.dcm").read_bytes() == b"result"
