"""When the online loop saves: finished iterations only, on its cadence, and the newest finished one on Stop.

A Stop may land mid-iteration: the weights are then half-trained, so `Checkpointer.begin` keeps a
copy of the last finished iteration's state while it is still unsaved, and `save_on_stop` writes that.
A stop that lands inside a write waits for it (stop_signals.stops_deferred).
"""

from __future__ import annotations

import copy
import time
from typing import Any

from planet_colab.run import Run, TrainingState
from planet_colab.stop_signals import stops_deferred


class _Frozen:
    """A saved state_dict standing in for its module or optimizer when a checkpoint is written."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def state_dict(self) -> dict:
        """The saved state."""
        return self.state


class Checkpointer:
    """Saves finished iterations: every `checkpoint_every`, when `checkpoint_minutes` have passed, after the
    last one, and on Stop the newest finished one, never weights an unfinished iteration half-trained."""

    def __init__(self, run: Run, state: TrainingState) -> None:
        self.run, self.state = run, state
        self.saved = self.finished = self.current = state.start_iteration - 1
        self.saved_at = time.monotonic()
        self.snapshot: tuple[dict, dict, dict | None] | None = None

    def begin(self, iteration: int) -> None:
        """Before `iteration` trains: copy weights, Adam and grad-scaler state while a finished iteration
        is still unsaved (fp16's loss scale moves mid-iteration like the weights do)."""
        snapshot = None
        if self.saved < iteration - 1:
            scaler = self.state.scaler
            snapshot = ({k: v.detach().clone() for k, v in self.state.model.state_dict().items()},
                        copy.deepcopy(self.state.optimizer.state_dict()),
                        copy.deepcopy(scaler.state_dict()) if scaler is not None else None)
        # Only now: a Stop while copying still finds `current` finished, and saves the live weights.
        self.snapshot, self.current = snapshot, iteration

    def finish(self, iteration: int, metrics: list[dict[str, Any]]) -> None:
        """`iteration` is done (weights, episodes, metrics row): checkpoint it when due."""
        self.finished = iteration
        config = self.run.config
        overdue = time.monotonic() - self.saved_at >= 60 * config.checkpoint_minutes
        last = iteration + 1 == config.total_iterations
        if (iteration + 1) % config.checkpoint_every == 0 or overdue or last:
            self._save(iteration, metrics, self.state.model, self.state.optimizer, self._scaler_state())

    def save_on_stop(self, metrics: list[dict[str, Any]]) -> str:
        """Save the newest finished iteration if it is not on disk yet; return the line to print."""
        before = self.saved
        try:
            if self.finished > self.saved:
                if self.finished == self.current:
                    self._save(self.finished, metrics, self.state.model, self.state.optimizer,
                               self._scaler_state())
                elif self.snapshot is not None:  # stopped mid-iteration: the state as it found it
                    weights, adam, scaler = self.snapshot
                    self._save(self.current - 1, metrics, _Frozen(weights), _Frozen(adam), scaler)
        except KeyboardInterrupt:
            pass  # a second stop while saving: it waited for the write, and this one stops anyway
        if self.saved > before:
            return f"Stopped: saved a checkpoint after iteration {self.saved + 1}; run again to resume."
        if self.saved < 0:
            return "Stopped before any iteration was checkpointed; run again to resume."
        return f"Stopped: the newest checkpoint is after iteration {self.saved + 1}; run again to resume."

    def _scaler_state(self) -> dict | None:
        return self.state.scaler.state_dict() if self.state.scaler is not None else None

    def _save(self, iteration: int, metrics: list[dict[str, Any]], model: Any, optimizer: Any,
              scaler: dict | None) -> None:
        # A stop that lands in the write waits for it: a zip cut short fails with an error of its own.
        with stops_deferred():
            self.run.save_checkpoint(model, optimizer, iteration, metrics,
                                     extra={"scaler": scaler} if scaler is not None else {})
            self.saved, self.saved_at = iteration, time.monotonic()
