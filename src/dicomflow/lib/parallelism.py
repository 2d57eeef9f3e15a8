"""The pipeline library's ``lib.parallelism.ProcessLikeThread``: a thread whose
``join()`` returns what its target returned (and keeps what it raised)."""

from collections.abc import Callable, Mapping
from threading import Thread
from typing import Any


class ProcessLikeThread(Thread):
    """``thread.join()`` returns the target's result; ``thread.exception`` is what it
    raised, if anything (``None`` is returned then)."""

    def __init__(
        self,
        group: None = None,
        target: Callable[..., Any] | None = None,
        name: str | None = None,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        daemon: bool = True,
    ) -> None:
        super().__init__(group, None, name, daemon=daemon)
        self._function = target
        self._arguments = args
        self._keywords = dict(kwargs or {})
        self._result: Any = None
        self.exception: Exception | None = None

    def run(self) -> None:
        if self._function is None:
            return
        try:
            self._result = self._function(*self._arguments, **self._keywords)
        except Exception as exc:  # kept for the caller, as the original does
            self.exception = exc

    def join(self, timeout: float | None = None) -> Any:
        super().join(timeout)
        return self._result


__all__ = ["ProcessLikeThread"]
