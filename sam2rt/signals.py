"""SIGTERM and SIGHUP handled like Ctrl-C: the running command unwinds and cleans up, then the process exits.

Python turns SIGINT into KeyboardInterrupt, so ``finally`` blocks and ``with`` statements remove temporary
files; SIGTERM (``kill``, systemd, docker stop) and SIGHUP (terminal closed) would kill the process on the
spot and leave hidden temporary folders beside the outputs. Within ``signals_as_exceptions`` they raise
``Terminated`` in the main thread instead.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

class Terminated(BaseException):
    """Raised in the main thread on SIGTERM or SIGHUP, so that every ``finally`` and ``with`` unwinds (the
    temporary folders beside the outputs are removed) exactly as for Ctrl-C. A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


HANDLED_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))  # + SIGINT


def _raise_terminated(signum: int, _frame: object) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second signal during cleanup ends the process at once
    raise Terminated(signum)


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise Terminated (SIGINT already raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {s: signal.signal(s, _raise_terminated) for s in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
