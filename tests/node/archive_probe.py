"""The archive job followed by writes a compromised decoder could attempt in its process
(imported by the node's worker processes as ``archive_probe``)."""

import os
from pathlib import Path
from typing import Any

from dicomflow.engine.series_archive import archive_series


def archive_and_vandalise(**kwargs: Any) -> dict[str, Any]:
    """Archive as the node asked, then try to damage the node's files; report each try."""
    totals = archive_series(**kwargs)
    data = Path(kwargs["input_dir"]).parents[3]  # {data}/series/rounds/{batch}/instances
    attempts = {
        "journal": (data / "journal" / "segment.journal").unlink,
        "spool": lambda: (data / "series" / "spool" / "incoming" / "x.dcm").write_bytes(b"x"),
        "queue": lambda: os.truncate(data / "queue.db", 0),
        "its inputs": lambda: next(Path(kwargs["input_dir"]).glob("*.dcm")).unlink(),
        "data directory": lambda: (data / "planted").mkdir(),
    }
    report = {}
    for what, attempt in attempts.items():
        try:
            attempt()
            report[what] = "DAMAGED"
        except PermissionError:
            report[what] = "refused"
    return {"archived": totals, "attempts": report}
