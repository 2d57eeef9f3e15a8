"""Every process a job started, found and killed when the job ends.

The fork server is a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process
orphaned anywhere below it — a daemon made by a double fork, a child that
called ``setsid()`` to leave the job's process group — becomes its child
instead of ``init``'s. Once a job's process has exited, whatever is still its
child is left over from that job, and is SIGKILLed and reaped until none is
left. The module imports little: the fork server imports it.
"""

import contextlib
import os
import signal
from collections.abc import Callable

Prctl = Callable[[int, int], int]

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper(prctl: Prctl | None) -> bool:
    """Adopt the orphans of this process's descendants (Linux); whether that worked."""
    return prctl is not None and prctl(PR_SET_CHILD_SUBREAPER, 1) == 0


def children() -> list[int]:
    """The pids of this (single-threaded) process's children, live or not yet reaped."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as stream:
            return [int(text) for text in stream.read().split()]
    except OSError:
        return _children_by_scan(pid)


def _children_by_scan(parent: int) -> list[int]:
    found: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            found.append(int(name))
    return found


def kill_all() -> int:
    """SIGKILL and reap every child, and every orphan they leave, until none is left;
    the number of processes killed."""
    killed = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return killed  # no child left, live or zombie
        if pid:
            continue  # reaped one that had ended
        for child in children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
                killed += 1
        with contextlib.suppress(ChildProcessError):
            os.waitpid(-1, 0)


def kill_now() -> None:
    """SIGKILL every child without waiting (a fork server about to exit)."""
    for child in children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
