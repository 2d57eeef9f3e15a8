"""Receivers for the ingest benchmark, each run in its own process.

``python bench/receivers.py KIND OUTPUT_DIR`` starts a C-STORE SCP on an
OS-assigned loopback port, prints ``PORT <n>`` on stdout and serves until its
standard input is closed. KIND is one of:

- ``pynetdicom``: a stock pynetdicom 3 SCP (default AE settings) writing
  ``event.encoded_dataset()`` to a file (not fsynced, like storescp).
- ``dicomflow``: :class:`dicomflow.net.scp.StoreSCP`; each instance is written
  to a temporary file, fsynced and renamed before the success status is sent.
- ``dicomflow-spool``: :class:`dicomflow.net.scp.StoreSCP` storing into the
  node's durable :class:`dicomflow.node.spool.Spool` (also fsyncs directories).
"""

import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUCCESS = 0x0000


def serve_pynetdicom(output: Path) -> Callable[[], None]:
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    def handle_store(event: Any) -> int:
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


def serve_dicomflow(output: Path) -> Callable[[], None]:
    from dicomflow.net.scp import ReceivedInstance, StoreSCP

    def store(instance: ReceivedInstance) -> int:
        temporary = output / f".{uuid.uuid4().hex}.part"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            os.write(descriptor, instance.encoded())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, temporary.with_name(temporary.name[1:-5] + ".dcm"))
        return SUCCESS

    scp = StoreSCP(ae_title="DICOMFLOW", ip="127.0.0.1", port=0, on_store=store)
    print(f"PORT {scp.port}", flush=True)
    return scp.close


def serve_dicomflow_memory(output: Path) -> Callable[[], None]:
    from dicomflow.net.scp import ReceivedInstance, StoreSCP

    def store(instance: ReceivedInstance) -> int:
        instance.encoded()
        return SUCCESS

    scp = StoreSCP(ae_title="DICOMFLOW", ip="127.0.0.1", port=0, on_store=store)
    print(f"PORT {scp.port}", flush=True)
    return scp.close


def serve_dicomflow_spool(output: Path) -> Callable[[], None]:
    from dicomflow.dicom.keys import value_key
    from dicomflow.net.scp import ReceivedInstance, StoreSCP
    from dicomflow.node.spool import Spool

    spool = Spool(output)

    def store(instance: ReceivedInstance) -> int:
        dataset = instance.dataset
        spool.store(
            value_key(dataset.get("PatientID")), str(dataset.SOPInstanceUID), instance.encoded()
        )
        return SUCCESS

    scp = StoreSCP(ae_title="DICOMFLOW", ip="127.0.0.1", port=0, on_store=store)
    print(f"PORT {scp.port}", flush=True)
    return scp.close


RECEIVERS = {
    "pynetdicom": serve_pynetdicom,
    "dicomflow": serve_dicomflow,
    "dicomflow-spool": serve_dicomflow_spool,
    "dicomflow-memory": serve_dicomflow_memory,
}


def main() -> None:
    kind, output = sys.argv[1], Path(sys.argv[2])
    stop = RECEIVERS[kind](output)
    sys.stdin.read()
    stop()


if __name__ == "__main__":
    main()
