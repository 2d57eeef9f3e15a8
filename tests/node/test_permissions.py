"""Files holding patient data are readable by the node's user alone: the data directory
is 0700 and the files that name or hold patients are 0600 in 0700 directories."""

import stat
from pathlib import Path

from sample_pipelines import RaisingPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from support import storescu, wait_for


def modes(root: Path) -> dict[str, int]:
    """Every path below ``root`` (and ``root``): its permission bits."""
    paths = [root, *root.rglob("*")]
    return {str(path.relative_to(root)): stat.S_IMODE(path.lstat().st_mode) for path in paths}


def test_after_a_failed_round_nothing_in_the_data_directory_is_open_to_others(
    make_node, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    node = make_node(RaisingPipeline)
    storescu(node.port, write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "ct"))
    wait_for(lambda: node.counters.rounds_failed == 1, 30, "the round to fail")

    found = modes(data)
    [failed] = (data / "failed").iterdir()
    private = [
        "queue.db",
        "queue.db-wal",
        "logs/jobs",
        "journal",
        "journal/segment.journal",
        "spool/incoming",
        "rounds",
        "failed",
        f"failed/{failed.name}",
        f"failed/{failed.name}/process.log",
        f"failed/{failed.name}/error.json",
        f"failed/{failed.name}/instances",
        *(str(path.relative_to(data)) for path in failed.glob("instances/*.dcm")),
    ]
    assert found["."] == 0o700  # nothing below it is reachable by other users
    assert {name: found[name] & 0o077 for name in private} == dict.fromkeys(private, 0)


def test_an_existing_data_directory_is_closed_to_other_users(make_node, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)

    make_node(RaisingPipeline)

    assert stat.S_IMODE(data.stat().st_mode) == 0o750
