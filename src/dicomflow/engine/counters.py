"""What the node has done since it started: one counter per :class:`Count`."""

import threading
from dataclasses import dataclass, field
from enum import StrEnum


class Count(StrEnum):
    """The node's counters (each a field of :class:`NodeCounters`)."""

    RECEIVED = "received"
    REFUSED = "refused"
    DISCARDED = "discarded"
    ROUNDS_STARTED = "rounds_started"
    ROUNDS_SUCCEEDED = "rounds_succeeded"
    ROUNDS_FAILED = "rounds_failed"
    DELIVERED = "delivered"
    WORKER_RESTARTS = "worker_restarts"


@dataclass
class NodeCounters:
    """What the node has done since it started (read as fields; counted with :meth:`add`)."""

    received: int = 0
    refused: int = 0
    discarded: int = 0
    rounds_started: int = 0
    rounds_succeeded: int = 0
    rounds_failed: int = 0
    delivered: int = 0
    worker_restarts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, count: Count, amount: int = 1) -> None:
        with self.lock:
            match count:
                case Count.RECEIVED:
                    self.received += amount
                case Count.REFUSED:
                    self.refused += amount
                case Count.DISCARDED:
                    self.discarded += amount
                case Count.ROUNDS_STARTED:
                    self.rounds_started += amount
                case Count.ROUNDS_SUCCEEDED:
                    self.rounds_succeeded += amount
                case Count.ROUNDS_FAILED:
                    self.rounds_failed += amount
                case Count.DELIVERED:
                    self.delivered += amount
                case Count.WORKER_RESTARTS:
                    self.worker_restarts += amount
