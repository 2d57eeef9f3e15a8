"""DicomNode's seven examples, ported to dicomflow, run end to end.

Each port in ``examples/`` keeps the original's structure, imports (root
``dicomflow``) and API calls. A test starts it as a node in its own process
(``dicomflow serve file.py:Class``), sends a synthetic CT series with dcmtk
``storescu`` and observes the result the way the example's user would: files
on disk, instances at a dcmtk ``storescp``, or a line in the node's log.

The NIfTI and RT-struct examples need the ``nifti`` and ``rtstruct`` extras,
which the test extras install.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom import Dataset
from pydicom.pixels.processing import apply_modality_lut

from dicomflow.dicom.factory import make_ct_series, write_series
from support import StoreSCPPeer, free_port, storescu

DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")
EXAMPLES = Path(__file__).parent / "examples"
START_TIMEOUT_S = 30
RESULT_TIMEOUT_S = 45

# What each example needs beyond main, by API (all seven pass once these exist).
PIPELINE = "server.nodes/server.input_container faces, post_init, log_output, int log_level"
GRINDERS = "grinder classes in server.grinders"
OUTPUTS = "lib.io.save_dicom, FileOutput saving functions, dicom.dimse"
FACTORY = "dicom.dicom_factory (DicomFactory, Blueprint, StaticElement), dicom.blueprints"
INPUTS = "AbstractInput.Options, add_image() -> int, sized iterable inputs"


@dataclass
class ExampleNode:
    """A ported example running as ``dicomflow serve``, with its log and environment."""

    folder: Path
    process: subprocess.Popen[bytes]
    port: int
    ae_title: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def send(self, files: list[Path]) -> None:
        storescu(self.port, files, aec=self.ae_title)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {what} within {RESULT_TIMEOUT_S}s; node log:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log_text().splitlines()[-40:])


Starter = Callable[[str, str, dict[str, str]], ExampleNode]


@pytest.fixture
def start_example(tmp_path: Path) -> Iterator[Starter]:
    """Start ``examples/<spec>`` on a free port; the node is killed at teardown."""
    nodes: list[ExampleNode] = []

    def start(spec: str, ae_title: str, env: dict[str, str]) -> ExampleNode:
        port, log = free_port(), tmp_path / "node.log"
        command = [DICOMFLOW, "serve", str(EXAMPLES / spec), "--port", str(port)]
        command += ["--data-dir", str(tmp_path / "data"), "--no-web", "--quiet-period", "0.5"]
        command += ["--log-path", str(tmp_path / "pipeline.log")]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
        with log.open("ab") as stream:
            process = subprocess.Popen(
                command,
                stdout=stream,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env={**environment, **env},
            )
        node = ExampleNode(tmp_path, process, port, ae_title, log, env)
        nodes.append(node)
        wait_for_listening(node, spec)
        return node

    yield start
    for node in nodes:
        if node.process.poll() is None:
            node.process.kill()
            node.process.wait()


def wait_for_listening(node: ExampleNode, spec: str) -> None:
    """Return once the node accepts connections; fail at once if it exits first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and node.process.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", node.port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"{spec} did not start; node log:\n{node.tail()}")


def ct_series(
    folder: Path, count: int, patient_id: str = "DEMO001", patient_name: str = "Demo^Patient"
) -> tuple[list[Dataset], list[Path]]:
    """A synthetic CT series with acquisition timing, written to ``folder``."""
    datasets = make_ct_series(
        count, rows=16, columns=16, patient_id=patient_id, patient_name=patient_name
    )
    for index, dataset in enumerate(datasets):
        dataset.AcquisitionDate = "20240101"
        dataset.AcquisitionTime = f"1200{index:02d}.000000"
        dataset.SeriesTime = "120000.000000"
        dataset.PatientPosition = "HFS"  # the general series blueprint requires it
    return datasets, write_series(datasets, folder)


def read_all(paths: list[Path]) -> list[Dataset]:
    return [pydicom.dcmread(path) for path in paths]


def modality_values(dataset: Dataset) -> npt.NDArray[np.float64]:
    """Pixel values after the modality LUT (Hounsfield units for CT)."""
    return np.asarray(apply_modality_lut(dataset.pixel_array, dataset), dtype=np.float64)


def dicom_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.dcm") if p.is_file())


def test_store_node_keeps_every_instance_in_the_archive_folder(
    tmp_path: Path, start_example: Starter
) -> None:
    archive = tmp_path / "archive"
    node = start_example(
        "store_node.py:StoreNode", "STORENODE", {"STORENODE_ARCHIVE_PATH": str(archive)}
    )
    sent, files = ct_series(tmp_path / "series", 4)
    node.send(files)
    node.wait_for(lambda: len(dicom_files(archive)) == 4, "4 files in the archive")
    stored = {d.SOPInstanceUID: d for d in read_all(dicom_files(archive))}
    assert set(stored) == {d.SOPInstanceUID for d in sent}
    assert all(np.array_equal(stored[s.SOPInstanceUID].pixel_array, s.pixel_array) for s in sent)


def test_mogsen_store_node_writes_instances_and_a_tsv_per_series(
    tmp_path: Path, start_example: Starter
) -> None:
    archive = tmp_path / "archive"
    node = start_example(
        "mogsen_store_node.py:StoreNode", "STORENODE", {"STORENODE_ARCHIVE_PATH": str(archive)}
    )
    sent, files = ct_series(tmp_path / "series", 3, patient_id="MOGSEN1")
    node.send(files)
    study, series = sent[0].StudyInstanceUID, sent[0].SeriesInstanceUID
    tsv = archive / "MOGSEN1" / study / f"{series}.tsv"
    node.wait_for(lambda: tsv.is_file() and len(tsv.read_text().splitlines()) == 4, "the TSV")
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    assert rows[0] == ["Plane", "Frame", "Start", "Dur", "AcqTime", "File"]
    assert sorted(int(row[0]) for row in rows[1:]) == [1, 2, 3]
    assert sorted(float(row[2]) for row in rows[1:]) == [0.0, 1.0, 2.0]
    stored = dicom_files(archive / "MOGSEN1" / study / series)
    assert {p.stem for p in stored} == {d.SOPInstanceUID for d in sent}


def test_plus_one_node_sends_the_incremented_series_to_the_pacs(
    tmp_path: Path, start_example: Starter, storescp: StoreSCPPeer
) -> None:
    env = {
        "PLUSONE_ENDPOINT_HOST": "127.0.0.1",
        "PLUSONE_ENDPOINT_PORT": str(storescp.port),
        "PLUSONE_ENDPOINT_AE": storescp.ae_title,
        "PLUSONE_MIN_IMAGES": "3",
    }
    node = start_example("plus_one_node.py:PlusOnePipeline", "PLUSONE", env)
    sent, files = ct_series(tmp_path / "series", 4)
    node.send(files)
    node.wait_for(lambda: len(storescp.files()) == 4, "4 instances at storescp")
    received = sorted(read_all(storescp.files()), key=lambda d: int(d.InstanceNumber))
    expected = sorted(sent, key=lambda d: int(d.InstanceNumber))
    for result, original in zip(received, expected, strict=True):
        assert result.SOPInstanceUID != original.SOPInstanceUID
        assert np.allclose(modality_values(result), modality_values(original) + 1)


def test_anonymization_node_writes_files_without_the_patient_identity(
    tmp_path: Path, start_example: Starter
) -> None:
    output = tmp_path / "anonymized"
    output.mkdir()
    env = {"ANON_NODE_OUTPUT_PATH": str(output)}
    node = start_example("anonymization_node.py:AnonymizationPipeline", "ANONYMIZATION", env)
    sent, files = ct_series(tmp_path / "series", 3, patient_id="SECRET7", patient_name="Doe^Jane")
    node.send(files)
    node.wait_for(lambda: len(dicom_files(output)) == 3, "3 anonymized files")
    written = read_all(dicom_files(output))
    assert {str(d.PatientName).split("_")[0] for d in written} == {"Anon"}
    assert "SECRET7" not in {d.PatientID for d in written}
    assert not {d.SOPInstanceUID for d in written} & {d.SOPInstanceUID for d in sent}
    assert not {d.SeriesInstanceUID for d in written} & {sent[0].SeriesInstanceUID}


def test_average_node_averages_series_of_equal_length(
    tmp_path: Path, start_example: Starter
) -> None:
    output = tmp_path / "average"
    output.mkdir()
    node = start_example(
        "average_node.py:AveragingPipeline",
        "AVERAGENODE",
        {"AVERAGE_NODE_OUTPUT_PATH": str(output)},
    )
    first, first_files = ct_series(tmp_path / "a", 3, patient_id="AVG1")
    second, second_files = ct_series(tmp_path / "b", 3, patient_id="AVG1")
    for dataset in second:
        dataset.PixelData = (dataset.pixel_array + 10).astype(np.uint16).tobytes()
    second_files = write_series(second, tmp_path / "b2")
    node.send([*first_files, *second_files])
    result = output / "average.npy"
    node.wait_for(result.is_file, "average.npy")
    expected = np.mean([[d.pixel_array for d in first], [d.pixel_array for d in second]], axis=0)
    average = np.load(result)
    assert average.size == expected.size
    shift = np.sort(average, axis=None) - np.sort(expected, axis=None)  # 0, or a rescale
    assert np.allclose(shift, shift[0], atol=1e-3)
    assert shift[0] in (0, -1024)


def test_external_rt_input_asks_the_rt_service_until_an_rt_object_arrives(
    tmp_path: Path, start_example: Starter, storescp: StoreSCPPeer
) -> None:
    env = {
        "PIPELINE_RT_ADDRESS": "127.0.0.1",
        "PIPELINE_RT_PORT": str(storescp.port),
        "PIPELINE_RT_AE_TITLE": storescp.ae_title,
    }
    pytest.importorskip("rt_utils", reason="RTStructGrinder needs the rtstruct extra")
    node = start_example("external_rt_input.py:RTPipeline", "RTCONSUMER", env)
    sent, files = ct_series(tmp_path / "series", 2, patient_id="RT1")
    node.send(files)
    node.wait_for(lambda: len(storescp.files()) >= 1, "images at the RT service")
    assert {d.SOPInstanceUID for d in read_all(storescp.files())} <= {
        d.SOPInstanceUID for d in sent
    }
    assert "RT object received" not in node.log_text() + _pipeline_log(tmp_path)


def test_total_segmentator_node_grinds_the_ct_to_nifti(
    tmp_path: Path, start_example: Starter
) -> None:
    pytest.importorskip("nibabel", reason="NiftiGrinder needs the nifti extra")
    node = start_example("total_segmentator_node.py:SegmentationPipeline", "TOTALSEG", {})
    datasets = make_ct_series(4, rows=16, columns=16, patient_id="TSEG1")
    for index, dataset in enumerate(datasets):
        dataset.InstanceNumber = index  # the example's validate() wants numbers below the count
    node.send(write_series(datasets, tmp_path / "series"))
    line = "NIfTI image of shape (16, 16, 4"
    node.wait_for(lambda: line in node.log_text() + _pipeline_log(tmp_path), "the NIfTI log line")


def _pipeline_log(folder: Path) -> str:
    path = folder / "pipeline.log"
    return path.read_text(errors="replace") if path.exists() else ""
