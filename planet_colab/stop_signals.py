"""How SIGINT and SIGTERM stop a command: as Ctrl-C does, at any instant, always with exit 130.

Ctrl-C, Colab's Stop button, `kill` and a job scheduler all reach the trainer as KeyboardInterrupt,
which the loop turns into "save what is finished, say so in one line" (train.py, __main__.py). Three
instants need care, and this module owns them:

- Start-up. Until the command line is ready to report a stop, a signal is only remembered
  (`hold_until_ready`) and raised once it is (`stops_raise`), so a stop during the first imports
  neither kills the process outright (SIGTERM's default) nor prints a traceback.
- A checkpoint write. A KeyboardInterrupt inside torch's zip writer leaves the zip half-written, and
  torch's clean-up then fails with an error that replaces the stop. `stops_deferred` holds a signal
  until the write and its rename are done, then raises it.
- A finaliser. A KeyboardInterrupt raised while Python runs a `__del__` (numpy's NpzFile closing
  an episode file during garbage collection, say) is printed as "Exception ignored" and dropped: the
  stop would be lost. So the handler also requests a stop (stop_request.py) before it raises, and the
  loops' next `check_stop` raises it again; the request ends with the command (`stops_raise`).
- The exit. CPython remembers a KeyboardInterrupt that ended any `exec`/`eval` of source text (such
  as the functions `dataclasses` generates during imports), even one caught long before, and then
  kills itself with SIGINT after `main` returned (under `python -m`): exit -2 instead of 130. `forget_interrupted_exec`
  clears that memory.

A trainer started in the background of a script (`python -m planet_colab train … &`) inherits SIGINT
ignored; the command line takes SIGINT back so that `kill -INT` stops it as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from planet_colab.stop_request import clear_stop_request, request_stop

_held: list[int] = []  # signals that arrived while stops were held, oldest first


def raise_interrupt(signum: int, frame: Any) -> None:
    """Signal handler: stop as Ctrl-C does (KeyboardInterrupt), and at the loops' next check if a
    finaliser swallows it."""
    request_stop()
    raise KeyboardInterrupt


def _hold(signum: int, frame: Any) -> None:
    _held.append(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def hold_until_ready() -> None:
    """For `python -m planet_colab`, first thing: remember SIGINT/SIGTERM instead of acting on them until
    `stops_raise` begins; an ignored SIGINT (a background job of a script) is taken back too."""
    if not _in_main_thread():
        return
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, signal.SIG_IGN):
        signal.signal(signal.SIGINT, _hold)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _hold)


@contextlib.contextmanager
def stops_raise() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise KeyboardInterrupt; a stop held since start-up
    is raised at once. Handlers someone else chose (a notebook's, Ray's) are left alone."""
    if not _in_main_thread():
        yield
        return
    mine = {signal.SIGINT: (signal.default_int_handler, _hold), signal.SIGTERM: (signal.SIG_DFL, _hold)}
    before = {sig: signal.getsignal(sig) for sig in mine}
    installed = [sig for sig in mine if before[sig] in mine[sig]]
    for sig in installed:
        signal.signal(sig, raise_interrupt)
    try:
        if _held:
            _held.clear()
            raise KeyboardInterrupt
        yield
    finally:
        for sig in installed:
            signal.signal(sig, before[sig])
        if installed:
            clear_stop_request()  # the command is over, and its stop with it


@contextlib.contextmanager
def interrupts_outlive_finalisers() -> Iterator[None]:
    """While the block runs, a Ctrl-C (a notebook's Stop) that a finaliser swallows still stops the loops at
    their next check; only where SIGINT has Python's own handler (a notebook cell, a script), SIGTERM untouched."""
    if not _in_main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield  # the command line's handler does this already (stops_raise); someone else's is left alone
        return
    signal.signal(signal.SIGINT, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        clear_stop_request()


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block runs (a checkpoint being written); raise KeyboardInterrupt after
    it when one came. Only handlers that raise KeyboardInterrupt are held; other threads are not affected."""
    if not _in_main_thread():
        yield
        return
    raising = (signal.default_int_handler, raise_interrupt)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    held = [sig for sig, handler in before.items() if handler in raising]
    if not held:  # nothing raises here (an outer block already holds them, or someone else's handlers)
        yield
        return
    start = len(_held)
    for sig in held:
        signal.signal(sig, _hold)
    try:
        yield
    finally:
        for sig in held:
            signal.signal(sig, before[sig])
        arrived = len(_held) > start
        del _held[start:]
        if arrived:
            raise KeyboardInterrupt  # the write is complete: the stop goes on as if it came just now


def forget_interrupted_exec() -> None:
    """Clear CPython's memory of a KeyboardInterrupt that ended an exec() of source text, so that the
    exit code `main` returned (130 after a stop) is the process's, not a kill by SIGINT."""
    # Every exec of source text resets that memory before it runs, and this one ends cleanly.
    exec("")
