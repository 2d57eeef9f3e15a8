"""How long a live endpoint waits for its results when dead endpoints come first.

Puts three items into an outbox with the default retries (5, backoff 2 s): one
for a closed port, one for a peer that takes the connection and never answers
(a listener that never accepts), one for a live dcmtk ``storescp``, in that
order, and prints the seconds until the live one has every instance.

    .venv/bin/python bench/endpoints.py [--instances 3]
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/ holds queue.py, which would shadow the standard module: keep bench/ off sys.path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse
import shutil
import socket
import subprocess
import tempfile
import time

from dicomflow.destinations import DicomDestination, OutboxDestination
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.outbox import Outbox


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_storescp(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    folder.mkdir(parents=True)
    command = ["storescp", "-aet", "PACS", "-od", str(folder), "+xa", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    process.terminate()
    raise SystemExit("storescp did not start")


def add_item(outbox: Outbox, root: Path, name: str, port: int, files: list[Path]) -> None:
    folder = root / name
    folder.mkdir()
    for path in files:
        shutil.copy(path, folder / path.name)
    destination = OutboxDestination(DicomDestination("127.0.0.1", port, "PACS"))
    outbox.add(name, folder, destination)


def measure(root: Path, count: int) -> float:
    files = write_series(make_ct_series(count), root / "series")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    process, live_port = start_storescp(root / "pacs")
    outbox = Outbox(root / "outbox", calling_ae_title="BENCH")
    try:
        add_item(outbox, root, "a-closed-port", free_port(), files)
        add_item(outbox, root, "b-never-answers", silent.getsockname()[1], files)
        add_item(outbox, root, "c-live", live_port, files)
        started = time.monotonic()
        outbox.start()
        while len(list((root / "pacs").iterdir())) < count:
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        silent.close()
        process.terminate()
        process.wait(10)
        outbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        seconds = measure(Path(folder), args.instances)
    print(f"live endpoint had {args.instances} instance(s) after {seconds:.2f} s")


if __name__ == "__main__":
    main()
