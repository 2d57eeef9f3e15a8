"""Instances waiting for their patient's other inputs cost a few kB of memory each."""

import gc
import tracemalloc
from pathlib import Path

from sample_pipelines import HoldingPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from support import NodeFactory, storescu, wait_for

WAITING = 150
PER_INSTANCE_LIMIT = 16 * 1024  # a CT header of ~40 elements as pydicom holds them: ~11 kB


def test_waiting_instances_keep_no_large_values_in_memory(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """Each instance carries a 128 kB private OB and a 16 kB private UN; they wait for a
    RELEASE instance that never comes. Their headers keep neither (the files on disk do)."""
    node = make_node(HoldingPipeline)
    series = make_ct_series(WAITING, rows=16, columns=16, patient_id="WAITING")
    for dataset in series:
        block = dataset.private_block(0x0009, "DICOMFLOW TEST", create=True)
        block.add_new(0x10, "OB", b"\x01" * 128 * 1024)
        block.add_new(0x11, "UN", b"\x02" * 16 * 1024)
    paths = write_series(series, tmp_path / "sent")
    storescu(node.port, paths[:1])  # the first one creates the patient's inputs
    wait_for(lambda: node.counters.received == 1, 30, "the first instance")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        storescu(node.port, paths[1:])
        wait_for(lambda: node.counters.received == WAITING, 60, "the instances")
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_instance = retained / (WAITING - 1)
    print(f"memory kept per waiting instance: {per_instance / 1024:.1f} kB")
    assert node.collector.state(node.collector.patients()[0]) == {"any": WAITING}
    assert per_instance < PER_INSTANCE_LIMIT
    [header] = node.collector.headers(node.collector.patients()[0])[:1]
    assert 0x00091010 not in header and 0x00091011 not in header
    assert "PatientID" in header and "SOPInstanceUID" in header
