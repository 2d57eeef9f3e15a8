"""Receivers for the ingest benchmark, each run in its own process.

``python bench/receivers.py KIND OUTPUT_DIR`` starts a C-STORE SCP on an
OS-assigned loopback port, prints ``PORT <n>`` on stdout and serves until its
standard input is closed. KIND is one of:

- ``pynetdicom``: a stock pynetdicom 3 SCP (default AE settings) writing
  ``event.encoded_dataset()`` to a file (not fsynced, like storescp).
- ``pynetdicom-durable``: the same stock SCP storing with :func:`store_durably`.
- ``dicomflow``: :class:`dicomflow.net.pynetdicom_acceptor.StoreSCP` (the optional
  ``receiver = "pynetdicom"``, pynetdicom stock) storing ``instance.encoded()``
  with :func:`store_durably`.
- ``dicomflow-spool``: the same ``StoreSCP`` storing into the
  node's :class:`dicomflow.engine.spool.Spool` as the node does (decodes the
  dataset for PatientID and SOPInstanceUID; also fsyncs directories).
- ``dicomflow-memory``: the same ``StoreSCP`` calling
  ``instance.encoded()`` and storing nothing: the network path alone.
- ``lean``, ``lean-spool``, ``lean-memory``: the same three with
  :class:`dicomflow.net.acceptor.LeanStoreSCP`, the node's default receiver.
  ``lean-spool`` attaches the spool journal, as the node does by default.
- ``node``: a whole :class:`dicomflow.node.Node` on the embedded defaults (lean
  receiver, spool journal, collector, trigger; no dashboard) whose pipeline input
  never validates, so nothing but receiving and spooling happens.
- ``lean-spool-classic``: ``lean-spool`` without the journal (two flushes per
  instance: the file, then its directory).
- ``node-tls``: ``node`` with DICOM TLS on a second port (``tls_port``), mutual TLS
  with the self-signed certificate in the directory given as third argument
  (``certificate.pem``, ``private-key.pem``; it is also the only CA trusted). Prints
  ``PORT <plain>`` and then ``TLS_PORT <tls>``: the same node answers on both.
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/queue.py would shadow the standard queue module (which pynetdicom and redis
# import): load the standard one first, with bench/ off sys.path, then allow bench/.
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
import queue  # noqa: F401

sys.path.insert(0, str(BENCH_DIR))

import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

SUCCESS = 0x0000


def store_durably(directory: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file, fsync it and rename it to ``<uuid>.dcm``."""
    name = uuid.uuid4().hex
    temporary = directory / f".{name}.part"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, directory / f"{name}.dcm")


def serve_pynetdicom(output: Path, durable: bool = False) -> Callable[[], None]:
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    def handle_store(event: Any) -> int:
        if durable:
            store_durably(output, event.encoded_dataset())
        else:
            with open(output / f"{uuid.uuid4().hex}.dcm", "wb") as stream:
                stream.write(event.encoded_dataset())
        return SUCCESS

    ae = AE(ae_title="STOCK")
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)]
    )
    assert server is not None
    print(f"PORT {server.server_address[1]}", flush=True)
    return server.shutdown


def serve_dicomflow(
    output: Path, store: Callable[[Any], int], lean: bool = False
) -> Callable[[], None]:
    from dicomflow.net.acceptor import LeanStoreSCP
    from dicomflow.net.pynetdicom_acceptor import StoreSCP

    server = LeanStoreSCP if lean else StoreSCP
    scp = server(ae_title="RECEIVER", ip="127.0.0.1", port=0, on_store=store)
    print(f"PORT {scp.port}", flush=True)
    return scp.close


def durable_store(output: Path) -> Callable[[Any], int]:
    def store(instance: Any) -> int:
        store_durably(output, instance.encoded())
        return SUCCESS

    return store


def spool_store(output: Path, journal: bool = True) -> Callable[[Any], int]:
    import atexit

    from dicomflow.dicom.keys import value_key
    from dicomflow.engine.journal import Journal
    from dicomflow.engine.spool import Spool
    from dicomflow.settings import SPOOL_JOURNAL_MAX_BYTES

    if journal:  # as the node does by default
        spool_journal = Journal(output / "journal", max_instance_bytes=SPOOL_JOURNAL_MAX_BYTES)
        spool = Spool(output / "spool", journal=spool_journal, journal_name="pipeline")
        spool_journal.open([spool])
        atexit.register(spool_journal.close)
    else:
        spool = Spool(output / "spool")

    def store(instance: Any) -> int:
        dataset = instance.dataset
        patient_key = value_key(dataset.get("PatientID"))
        spool.store(patient_key, str(dataset.SOPInstanceUID), instance.encoded())
        return SUCCESS

    return store


def serve_node(output: Path, **settings: Any) -> Callable[[], None]:
    """A whole node on the embedded defaults whose pipeline never completes."""
    sys.path.insert(0, str(BENCH_DIR / "pipelines"))
    from spool_pipeline import SpoolOnlyPipeline

    pipeline = SpoolOnlyPipeline(
        start=False,
        port=0,
        ae_title="RECEIVER",  # as the benchmarks' storescu calls it
        data_directory=output,
        log_level="WARNING",
        web_enabled=False,
        **settings,
    )
    pipeline.open(blocking=False, configure_logs=False)
    print(f"PORT {pipeline.node.port}", flush=True)
    return pipeline.close


def serve_node_tls(output: Path, identity: Path) -> Callable[[], None]:
    """``serve_node`` listening plain on its port and with mutual DICOM TLS on a second."""
    from dicomflow.tls import CERTIFICATE_FILE, PRIVATE_KEY_FILE

    tls_port = free_port()
    stop = serve_node(
        output,
        tls_certificate=identity / CERTIFICATE_FILE,
        tls_private_key=identity / PRIVATE_KEY_FILE,
        tls_ca_certificates=identity / CERTIFICATE_FILE,
        tls_port=tls_port,
    )
    print(f"TLS_PORT {tls_port}", flush=True)
    return stop


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def memory_store(output: Path) -> Callable[[Any], int]:
    def store(instance: Any) -> int:
        instance.encoded()
        return SUCCESS

    return store


RECEIVERS: dict[str, Callable[[Path], Callable[[], None]]] = {
    "node": serve_node,
    "pynetdicom": serve_pynetdicom,
    "pynetdicom-durable": lambda output: serve_pynetdicom(output, durable=True),
    "dicomflow": lambda output: serve_dicomflow(output, durable_store(output)),
    "dicomflow-spool": lambda output: serve_dicomflow(output, spool_store(output)),
    "dicomflow-memory": lambda output: serve_dicomflow(output, memory_store(output)),
    "lean": lambda output: serve_dicomflow(output, durable_store(output), lean=True),
    "lean-spool": lambda output: serve_dicomflow(output, spool_store(output), lean=True),
    "lean-spool-classic": lambda output: serve_dicomflow(
        output, spool_store(output, journal=False), lean=True
    ),
    "lean-memory": lambda output: serve_dicomflow(output, memory_store(output), lean=True),
}


def main() -> None:
    kind, output = sys.argv[1], Path(sys.argv[2])
    if kind == "node-tls":
        stop = serve_node_tls(output, Path(sys.argv[3]))
    else:
        stop = RECEIVERS[kind](output)
    sys.stdin.read()
    stop()


if __name__ == "__main__":
    main()
