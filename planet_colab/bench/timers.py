"""Wall-clock timers wrapped around named functions from outside, so the timed code stays untouched.

`Timers.wrap(owner, "attr", "label")` replaces `owner.attr` by a timed call until the Timers' `with`
block ends (then the original is put back). A label's time includes whatever its function calls,
so labels nested inside another label (the encoder inside a train step) are shares of it, not extra.
Each label keeps wall seconds and process CPU seconds: on a CPU shared with other busy processes the
wall time includes waiting for a core, the CPU time is the work itself.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict
from typing import Any, Callable

_MISSING = object()


class Timers(contextlib.ExitStack):
    """Seconds and calls per label for the functions wrapped while the block is open."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        """Time every call of `owner.attr` under `label` until the block ends."""
        original = getattr(owner, attr)
        own = owner.__dict__.get(attr, _MISSING) if hasattr(owner, "__dict__") else _MISSING
        setattr(owner, attr, self.timed(original, label))
        self.callback(self._restore, owner, attr, own)

    def timed(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        """`fn` with its calls timed under `label`."""
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t0
                self.cpu_seconds[label] += time.process_time() - c0
                self.calls[label] += 1
        return call

    @staticmethod
    def _restore(owner: Any, attr: str, own: Any) -> None:
        if own is _MISSING:
            delattr(owner, attr)  # the class's (or module's original) attribute shows through again
        else:
            setattr(owner, attr, own)

    def reset(self) -> None:
        """Forget what was timed so far (the wrappers stay)."""
        self.seconds.clear()
        self.cpu_seconds.clear()
        self.calls.clear()

    def snapshot(self) -> dict[str, tuple[float, float]]:
        """(wall seconds, CPU seconds) per label so far."""
        return {k: (v, self.cpu_seconds[k]) for k, v in self.seconds.items()}
