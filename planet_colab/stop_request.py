"""A request to stop training, honoured at the next safe point exactly as Ctrl-C is.

A sweep's driver cannot press Ctrl-C inside a Ray worker. Ray's cancel raises KeyboardInterrupt
there from another thread, at any moment; with two runs going at once it sometimes never arrived
(one stop in four here), and both runs lost their unfinished work when Ray shut down. So a sweep's
task sets this process-wide flag instead when its sweep stops (sweep_task.py), and the loops look
at it between units of work: each gradient step, each environment step, each seed episode, each
poll of the wait for a lost machine's lease (lease.wait_for_lapse). There `check_stop` raises
StopRequested, a KeyboardInterrupt, in the loop's own thread: the online loop saves its finished
iterations as it does on Ctrl-C, and a checkpoint being written is never cut short.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


class StopRequested(KeyboardInterrupt):
    """Raised where training checks for a stop, once one was requested; handled wherever Ctrl-C is."""


def request_stop() -> None:
    """Ask this process's training loop to stop at its next check (callable from any thread)."""
    _requested.set()


def clear_stop_request() -> None:
    """Forget a stop request: a Ray worker process is reused for the next task."""
    _requested.clear()


def check_stop() -> None:
    """Raise StopRequested when a stop was requested (a few tens of nanoseconds otherwise)."""
    if _requested.is_set():
        raise StopRequested("stop requested")
