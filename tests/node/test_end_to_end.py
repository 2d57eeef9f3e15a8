"""End to end with real peers: dcmtk storescu -> node -> pipeline -> dcmtk storescp."""

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from sample_pipelines import MARK, CopyPipeline, CTCopyPipeline, LegacyPipeline, TwoInputPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from support import StoreSCPPeer, storescu, wait_for

BUNDLED = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_RLE.dcm",  # RLE
    "JPEG2000.dcm",  # JPEG 2000
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
    "JPEG-lossy.dcm",  # JPEG extended
    "SC_rgb_rle.dcm",
    "ExplVR_BigEnd.dcm",  # explicit VR big endian
    "image_dfl.dcm",  # deflated
    "SC_rgb_small_odd.dcm",
    "rtplan.dcm",  # implicit VR, no pixel data
    "rtdose.dcm",
    "waveform_ecg.dcm",
]


def bundled_files() -> list[Path]:
    return [Path(get_testdata_file(name)) for name in BUNDLED]  # type: ignore[arg-type]


def by_uid(paths: list[Path]) -> dict[str, pydicom.Dataset]:
    datasets = (pydicom.dcmread(path) for path in paths)
    return {str(ds.SOPInstanceUID): ds for ds in datasets}


@pytest.mark.parametrize("receiver", ["lean", "pynetdicom"])
def test_bundled_files_go_through_the_pipeline_to_storescp(
    make_node, storescp: StoreSCPPeer, receiver: str
):
    sent = by_uid(bundled_files())
    node = make_node(CopyPipeline, endpoints=[storescp.endpoint()], receiver=receiver)
    storescu(node.port, bundled_files())
    wait_for(lambda: len(storescp.files()) >= len(sent), what="results at storescp")
    received = by_uid(storescp.files())
    assert received.keys() == sent.keys()
    for uid, original in sent.items():
        result = received[uid]
        assert result.ImageComments == MARK
        assert result.SOPClassUID == original.SOPClassUID
        syntax = original.file_meta.TransferSyntaxUID
        if syntax.is_compressed:  # stored and forwarded exactly as received
            assert result.file_meta.TransferSyntaxUID == syntax
            assert result.PixelData == original.PixelData, uid
        elif "PixelData" in original:  # storescu may change the byte order of native data
            assert (result.pixel_array == original.pixel_array).all(), uid


def test_200_instance_ct_series_arrives_file_by_file(make_node, storescp, tmp_path):
    series = make_ct_series(200)
    files = write_series(series, tmp_path / "series")
    node = make_node(CTCopyPipeline, endpoints=[storescp.endpoint()])
    storescu(node.port, files)
    wait_for(lambda: len(storescp.files()) >= 200, what="200 results")
    received = by_uid(storescp.files())
    assert node.counters.rounds_succeeded == 1
    for original in series:
        result = received[str(original.SOPInstanceUID)]
        assert result.PixelData == original.PixelData
        assert result.ImageComments == MARK
    wait_for(lambda: not list((tmp_path / "data" / "outbox").iterdir()), what="empty outbox")
    # the round's folder is removed once its results are in the outbox; with one lane per
    # endpoint they may be delivered before that removal ends
    wait_for(lambda: not list((tmp_path / "data" / "rounds").iterdir()), what="no round left")


def test_inputs_from_two_associations_complete_one_round(make_node, storescp, tmp_path):
    ct = write_series(make_ct_series(3, patient_id="P2"), tmp_path / "ct")
    mr = make_ct_series(2, patient_id="P2", modality="MR")
    mr_files = write_series(mr, tmp_path / "mr")
    node = make_node(TwoInputPipeline, endpoints=[storescp.endpoint()])
    storescu(node.port, ct)
    wait_for(lambda: node.collector.state(node.collector.patients()[0]) == {"ct": 3, "mr": 0})
    assert node.counters.rounds_started == 0
    storescu(node.port, mr_files)
    wait_for(lambda: len(storescp.files()) == 5, what="CT and MR results")
    assert node.counters.rounds_succeeded == 1


def test_a_later_instance_starts_a_new_round_not_a_duplicate(make_node, storescp, tmp_path):
    first, second = make_ct_series(2, patient_id="P3"), make_ct_series(1, patient_id="P3")
    node = make_node(CopyPipeline, endpoints=[storescp.endpoint()])
    storescu(node.port, write_series(first, tmp_path / "a"))
    wait_for(lambda: len(storescp.files()) == 2)
    storescu(node.port, write_series(first, tmp_path / "a"))
    storescu(node.port, write_series(second, tmp_path / "b"))
    wait_for(lambda: node.counters.rounds_succeeded == 3, what="three rounds")
    wait_for(lambda: len(storescp.files()) == 3)


@pytest.mark.parametrize("pipeline", [LegacyPipeline, CopyPipeline])
def test_quiet_period_triggers_without_release(make_node, storescp, tmp_path, pipeline):
    node = make_node(pipeline, endpoints=[storescp.endpoint()], quiet_period_s=0.3)
    files = write_series(make_ct_series(2), tmp_path / "s")
    storescu(node.port, files)
    wait_for(lambda: len(storescp.files()) == 2, what="results after the quiet period")


def test_pipeline_rounds_run_on_redis(make_node, storescp, redis_server, tmp_path):
    node = make_node(
        CopyPipeline,
        endpoints=[storescp.endpoint()],
        queue_url=redis_server.url(),
        queue_workers=1,
    )
    storescu(node.port, write_series(make_ct_series(3), tmp_path / "s"))
    wait_for(lambda: len(storescp.files()) == 3, what="results via the Redis queue")
    assert node.counters.rounds_succeeded == 1
