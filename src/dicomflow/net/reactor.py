"""Event-driven reactors for pynetdicom 3.0: no 1 ms polling, no delayed ACKs.

Stock pynetdicom 3.0 runs two threads per association that poll. The DUL
thread (``DULServiceProvider.run_reactor``) sleeps 1 ms whenever a loop found
nothing to do; the association thread (``Association._run_reactor``) sleeps
1 ms on every loop before looking for a DIMSE message. Each C-STORE crosses
both threads twice (request in, response out), so a small instance waits
several milliseconds for nobody. ``AssociationSocket.recv`` also reads in
4096-byte chunks, and nothing re-arms ``TCP_QUICKACK``, so the kernel delays
its ACKs while a peer under Nagle's algorithm waits for them.

:func:`install` replaces, once per process and only for pynetdicom 3.0.x
(otherwise it logs a warning and pynetdicom runs stock):

- ``DULServiceProvider.__init__`` (wrapped): ``event_queue`` and
  ``to_provider_queue`` become queues that wake the DUL thread when an item is
  put, from any thread.
- ``DULServiceProvider.run_reactor``: the stock loop, except that when a loop
  found nothing to do it blocks in ``poll()`` on the association socket and a
  wake-up pipe (until data arrives, an item is queued, the thread is told to
  stop or the ARTIM timer expires) instead of sleeping 1 ms.
- ``DULServiceProvider.kill_dul`` / ``stop_dul``: also wake the thread;
  ``stop_dul`` joins it instead of polling ``is_alive()`` every 1 ms.
- ``Association.__init__`` (wrapped): ``dimse.msg_queue`` and
  ``dul.to_user_queue`` set a per-association event when an item is put.
- ``Association._run_reactor``: the stock loop, except that it blocks on that
  event (until a message or primitive arrives, the DUL thread ends or the
  network timeout expires) instead of sleeping 1 ms per loop. While it blocks
  it counts as paused, so ``send_*()`` and ``release()`` need not wait for it;
  it rechecks the checkpoint before taking a message, so it never takes one
  meant for a ``send_*()`` call.
- ``AssociationSocket.recv``: ``recv_into`` a preallocated buffer, asking for
  everything still missing instead of 4096 bytes at a time, and re-arming
  ``TCP_QUICKACK`` after every receive (:func:`dicomflow.net.socket.receive_exactly`).
- ``AssociationSocket._create_socket`` (wrapped; the requestor's socket): sets
  ``TCP_NODELAY`` and large buffers, as ``StoreSCP`` does for accepted ones.
  Without it our SCU waits ~40 ms per instance on a peer's delayed ACKs
  (measured: 40 instances to dcmtk ``storescp`` in 1.96 s before, 0.17 s after).

Both sides of an association (our SCP and our SCU) use the replacements;
associations created before :func:`install` keep the stock loops. Every
wait is bounded by :data:`MAX_WAIT` seconds as a safety net against a wake-up
source this module does not know about: a missed wake-up costs latency, never
a hang, and an idle association wakes each thread twice a second.

Fragile by nature: the replaced loops are copies of pynetdicom 3.0.4 code and
touch its private attributes (``_kill_thread``, ``_is_paused``,
``_reactor_checkpoint``, ``Timer._start_time``); re-check them before
widening the version guard. Effect measured in ``bench/RESULTS.md``.
"""

import contextlib
import logging
import os
import queue
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import pynetdicom
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AddressInformation, AssociationSocket

from dicomflow.net.socket import receive_exactly, tune_requesting_socket

logger = logging.getLogger(__name__)
# Messages copied from pynetdicom's loops keep pynetdicom's logger names.
_association_log = logging.getLogger("pynetdicom.association")
_dul_log = logging.getLogger("pynetdicom.dul")

SUPPORTED_VERSION_PREFIX = "3.0"
MAX_WAIT = 0.5
_TIMER_SLACK = 0.001
_INSTALLED = "_dicomflow_reactors_installed"  # marks the patched DULServiceProvider class
_WAKER = "_dicomflow_waker"
_WAKE = "_dicomflow_wake"
_FINISHED = "_dicomflow_finished"
_INSTALL_LOCK = threading.Lock()

_STOCK_DUL_INIT = DULServiceProvider.__init__
_STOCK_DUL_RUN = DULServiceProvider.run_reactor
_STOCK_KILL_DUL = DULServiceProvider.kill_dul
_STOCK_STOP_DUL = DULServiceProvider.stop_dul
_STOCK_ASSOCIATION_INIT = Association.__init__
_STOCK_ASSOCIATION_RUN = Association._run_reactor
_STOCK_CREATE_SOCKET = AssociationSocket._create_socket


def install() -> bool:
    """Replace pynetdicom's polling reactors (idempotent); return whether they are active."""
    with _INSTALL_LOCK:
        if installed():
            return True
        if not supported(pynetdicom.__version__):
            logger.warning(
                "pynetdicom %s is not %s.x: keeping its stock (polling) reactors.",
                pynetdicom.__version__,
                SUPPORTED_VERSION_PREFIX,
            )
            return False
        _patch()
        return True


def installed() -> bool:
    """Tell whether :func:`install` has replaced the reactors in this process."""
    return bool(getattr(DULServiceProvider, _INSTALLED, False))


def supported(version: str) -> bool:
    """Tell whether the replacements were written for this pynetdicom version."""
    prefix = SUPPORTED_VERSION_PREFIX
    return (version == prefix or version.startswith(prefix + ".")) and hasattr(select, "poll")


def _patch() -> None:
    DULServiceProvider.__init__ = _dul_init  # type: ignore[method-assign]
    DULServiceProvider.run_reactor = _dul_run_reactor  # type: ignore[method-assign]
    DULServiceProvider.kill_dul = _kill_dul  # type: ignore[method-assign]
    DULServiceProvider.stop_dul = _stop_dul  # type: ignore[method-assign]
    Association.__init__ = _association_init  # type: ignore[method-assign]
    Association._run_reactor = _association_run_reactor  # type: ignore[method-assign]
    AssociationSocket.recv = _recv  # type: ignore[method-assign]
    AssociationSocket._create_socket = _create_socket  # type: ignore[method-assign]
    setattr(DULServiceProvider, _INSTALLED, True)
    logger.debug("pynetdicom %s: event-driven reactors installed", pynetdicom.__version__)


class _NotifyingQueue(queue.Queue[Any]):
    """A queue that calls ``notify`` after every ``put``."""

    def __init__(self, notify: Callable[[], None]) -> None:
        super().__init__()
        self._notify = notify

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._notify()


class _Waker:
    """A self-pipe that wakes a DUL thread blocked in ``poll()``.

    The pipe exists only while the thread runs; :meth:`wake` writes to it only
    while the thread is blocked (or about to block), so a busy association
    costs no extra system calls.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read = self._write = -1
        self.blocking = False

    def open(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def close(self) -> None:
        with self._lock:
            for descriptor in (self._read, self._write):
                if descriptor >= 0:
                    os.close(descriptor)
            self._read = self._write = -1

    def wake(self) -> None:
        if not self.blocking:
            return
        with self._lock:
            if self._write >= 0:
                # A full pipe means a wake-up is pending anyway.
                with contextlib.suppress(BlockingIOError):
                    os.write(self._write, b"\0")

    def wait(self, descriptors: list[int], timeout: float) -> None:
        poller = select.poll()
        for descriptor in (self._read, *descriptors):
            poller.register(descriptor, select.POLLIN)
        poller.poll(timeout * 1000)
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass


# -- DUL service provider -------------------------------------------------------


def _dul_init(self: DULServiceProvider, assoc: Association) -> None:
    _STOCK_DUL_INIT(self, assoc)
    waker = _Waker()
    setattr(self, _WAKER, waker)
    setattr(self, _FINISHED, False)
    self.event_queue = _NotifyingQueue(waker.wake)
    self.to_provider_queue = _NotifyingQueue(waker.wake)


def _dul_run_reactor(self: DULServiceProvider) -> None:
    """``DULServiceProvider.run_reactor`` with a blocking wait instead of 1 ms sleeps."""
    waker: _Waker | None = getattr(self, _WAKER, None)
    if waker is None:
        _STOCK_DUL_RUN(self)
        return
    waker.open()
    try:
        _dul_loop(self, waker)
    finally:
        waker.close()
        setattr(self, _FINISHED, True)
        _wake_association(self.assoc)


def _dul_loop(self: DULServiceProvider, waker: _Waker) -> None:
    self._idle_timer.start()
    idle = False
    while True:
        if not self.assoc._dul_ready.is_set():
            self.assoc._dul_ready.set()
            idle = True
        if idle:
            _dul_wait(self, waker)
        if self._kill_thread:
            return
        if self.artim_timer.expired:
            self.event_queue.put("Evt18")
        try:
            if self._process_recv_primitive():
                pass
            elif self._is_transport_event():
                self._idle_timer.restart()
        except Exception as exc:
            _abort_after_error(self, exc)
            return
        try:
            event = self.event_queue.get(block=False)
        except queue.Empty:
            idle = True
            continue
        self.state_machine.do_action(event)
        idle = False


def _dul_wait(self: DULServiceProvider, waker: _Waker) -> None:
    """Block until the socket is readable, an item is queued, a stop or ARTIM expiry."""
    waker.blocking = True
    try:
        if self._kill_thread or self.to_provider_queue.qsize() or self.event_queue.qsize():
            return
        descriptors = _socket_descriptors(self.socket)
        if descriptors is not None:
            waker.wait(descriptors, _timeout(self.artim_timer))
    finally:
        waker.blocking = False


def _socket_descriptors(assoc_socket: AssociationSocket | None) -> list[int] | None:
    """The connected socket's descriptor to wait on, if any; None if TLS already holds data."""
    if assoc_socket is None or not assoc_socket._is_connected or assoc_socket.socket is None:
        return []
    connection = assoc_socket.socket
    pending = getattr(connection, "pending", None)  # ssl.SSLSocket only
    if pending is not None and pending():
        return None
    descriptor = connection.fileno()
    return [descriptor] if descriptor >= 0 else []


def _abort_after_error(self: DULServiceProvider, exc: Exception) -> None:
    """What stock ``run_reactor`` does when reading or sending fails unexpectedly."""
    _dul_log.error("Exception in DUL.run(), aborting association")
    _dul_log.exception(exc)
    abort_pdu = A_ABORT_RQ()
    abort_pdu.source = 0x02
    abort_pdu.reason_diagnostic = 0x00
    if self.socket is not None:
        self.socket.send(abort_pdu.encode())
    self.assoc.is_aborted = True
    self.assoc.is_established = False
    self.assoc._kill = True
    self._kill_thread = True


def _kill_dul(self: DULServiceProvider) -> None:
    _STOCK_KILL_DUL(self)
    _wake_dul(self)


def _stop_dul(self: DULServiceProvider) -> bool:
    """``DULServiceProvider.stop_dul`` that joins the thread instead of polling it."""
    if getattr(self, _WAKER, None) is None:
        return bool(_STOCK_STOP_DUL(self))
    if self.state_machine.current_state != "Sta1":
        return False
    self._kill_thread = True
    _wake_dul(self)
    if self.is_alive() and threading.current_thread() is not self:
        self.join()
    return True


def _wake_dul(dul: DULServiceProvider) -> None:
    waker: _Waker | None = getattr(dul, _WAKER, None)
    if waker is not None:
        waker.wake()


# -- Association reactor -----------------------------------------------------------


def _association_init(self: Association, *args: Any, **kwargs: Any) -> None:
    _STOCK_ASSOCIATION_INIT(self, *args, **kwargs)
    wake = threading.Event()
    setattr(self, _WAKE, wake)
    self.dimse.msg_queue = _NotifyingQueue(wake.set)
    self.dul.to_user_queue = _NotifyingQueue(wake.set)


def _wake_association(assoc: Association) -> None:
    wake: threading.Event | None = getattr(assoc, _WAKE, None)
    if wake is not None:
        wake.set()


def _association_run_reactor(self: Association) -> None:
    """``Association._run_reactor`` blocking on an event instead of sleeping 1 ms per loop."""
    wake: threading.Event | None = getattr(self, _WAKE, None)
    if wake is None:
        _STOCK_ASSOCIATION_RUN(self)
        return
    busy = True
    while not self._kill:
        # Paused while waiting: a send_*() or release() in another thread may go ahead.
        self._is_paused = True
        self._reactor_checkpoint.wait()
        if not busy:
            wake.wait(_timeout(self.dul._idle_timer))
        wake.clear()
        self._is_paused = False
        if not self._reactor_checkpoint.is_set():
            busy = True  # a send_*() began meanwhile: pause again before taking anything
            continue
        busy = _serve_next_message(self)
        if _association_ended(self):
            return


def _serve_next_message(self: Association) -> bool:
    """Serve one DIMSE request if one is queued; tell whether more may be waiting."""
    context_id, msg = self.dimse.get_msg(block=False)
    if msg:
        self._serve_request(msg, context_id)  # type: ignore[arg-type]
    return msg is not None or not self.dimse.msg_queue.empty()


def _association_ended(self: Association) -> bool:
    """The end-of-loop checks of stock ``_run_reactor``; True once the reactor must stop."""
    if self.is_established and self.acse.is_release_requested():
        self.acse.send_release(is_response=True)
        _association_log.info("Association Released")
        self.is_released = True
        self.is_established = False
        evt.trigger(self, evt.EVT_RELEASED, {})
        self.kill()
        return True
    if self.acse.is_aborted():
        aborted = " (A-P-ABORT)" if self.acse.is_aborted("a-p-abort") else ""
        _association_log.info("Association Aborted%s", aborted)
        self.dul.receive_pdu(wait=False)
        self.is_aborted = True
        self.is_established = False
        evt.trigger(self, evt.EVT_ABORTED, {})
        self.kill()
        return True
    if _dul_finished(self.dul):
        self.kill()
        return True
    if self.dul.idle_timer_expired():
        _on_network_timeout(self)
        return True
    return False


def _on_network_timeout(self: Association) -> None:
    _association_log.error("Network timeout reached")
    if self.network_timeout_response == "A-RELEASE":
        self._is_paused = True
        self._reactor_checkpoint.wait()
        self.release()
        self._is_paused = False
    else:
        self.abort()
    self.kill()


def _dul_finished(dul: DULServiceProvider) -> bool:
    if getattr(dul, _FINISHED, False) and dul.is_alive():
        dul.join()  # past its last statement: returns at once
    return not dul.is_alive()


# -- Socket ---------------------------------------------------------------------------


def _recv(self: AssociationSocket, nr_bytes: int) -> bytearray:
    """``AssociationSocket.recv``: read ``nr_bytes`` (fewer if the peer closes)."""
    if self.socket is None:
        raise OSError("The association socket is closed.")
    return receive_exactly(self.socket, nr_bytes)


def _create_socket(self: AssociationSocket, address: AddressInformation) -> socket.socket:
    """``AssociationSocket._create_socket`` (requestor side) plus TCP_NODELAY and buffers."""
    connection = _STOCK_CREATE_SOCKET(self, address)
    tune_requesting_socket(connection)
    return connection


def _timeout(timer: Any) -> float:
    """Seconds until a running pynetdicom ``Timer`` expires, capped at :data:`MAX_WAIT`."""
    running = timer.timeout is not None and timer._start_time is not None
    if not running or timer._end_time is not None:
        return MAX_WAIT
    return float(min(MAX_WAIT, max(timer.remaining, 0.0) + _TIMER_SLACK))
