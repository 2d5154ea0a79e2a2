"""SIGINT and SIGTERM that lose nothing: the first asks the loop to stop after the current step
(which it checkpoints), a second one exits at once."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Context manager installing the handlers; :meth:`requested` names the first signal seen.

    Outside the main thread (where Python allows no handlers) it installs nothing and
    :meth:`requested` stays None.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def requested(self) -> str | None:
        """``"SIGINT"`` or ``"SIGTERM"`` once one arrived, else None (the loop's ``stop`` callback)."""
        return self.signal_name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is not None:  # the second signal: no more waiting
            self._restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signal_name = signal.Signals(signum).name

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()


def exit_code(signal_name: str) -> int:
    """The shell's exit status for a process ended by ``signal_name`` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signal.Signals[signal_name])
