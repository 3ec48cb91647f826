"""One Ray task of a sweep: train (or resume) one run directory, and stop when the sweep asks.

The sweep's driver cannot press Ctrl-C inside a worker (stop_request.py says why), so it writes a
stop file under the sweep's root, which every node sees, and each task watches for it from a
thread. Once it is there, the task's training loop stops at its next gradient or environment step
and saves its finished iterations, as on Ctrl-C; a task that had not started, or was waiting out the
lease of a trainer lost with its machine, leaves its run as it was.
(Not a Ray actor as the flag: a task waiting in `ray.get` lends its CPU to the next queued run.)
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

from planet_colab.config import Config
from planet_colab.stop_request import StopRequested, clear_stop_request, request_stop

POLL_S = 1.0  # how often a task looks for its sweep's stop file


def _watch(stop_file: str, done: threading.Event) -> None:
    """Ask this process's training loop to stop once `stop_file` exists (a dropped Drive mount reads as not yet)."""
    while not done.wait(POLL_S):
        if os.path.exists(stop_file):
            request_stop()
            return


@contextlib.contextmanager
def _stop_when_asked(stop_file: str | None) -> Iterator[None]:
    """While inside, a thread watches for `stop_file` (when given)."""
    clear_stop_request()  # Ray reuses a worker process for the next task
    done = threading.Event()
    if stop_file is not None:
        threading.Thread(target=_watch, args=(stop_file, done), name="sweep-stop-watch", daemon=True).start()
    try:
        yield
    finally:
        done.set()
        clear_stop_request()


def train_run(config: dict[str, Any], run_dir: str, threads: int, stop_file: str | None = None
              ) -> dict[str, Any]:
    """Train (or resume) one run directory with `threads` torch threads until done or `stop_file` appears."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    from planet_colab.lease import RunInUseError, wait_for_lapse
    from planet_colab.threads import apply_threads
    from planet_colab.train import train_planner

    if stop_file is not None and os.path.exists(stop_file):
        return {"stopped": True}  # queued when the sweep stopped: its run is left as it was
    apply_threads(threads)  # torch's pool, and the renderer kept to one thread beside it
    with _stop_when_asked(stop_file):
        # Ray retries a run whose worker died. On this machine the dead worker's lease is taken over at
        # once; a worker lost with its machine holds the lease until its heartbeat goes stale, so wait
        # that long (a live owner elsewhere keeps beating: the wait ends and its one-line refusal stands).
        try:
            while True:
                try:
                    result = train_planner(Config.from_dict(config), run_dir, progress=False)
                    break
                except RunInUseError:
                    if wait_for_lapse(run_dir, say=lambda line: print(line, flush=True)) in ("here", "live"):
                        raise
        except StopRequested:  # the loop saved its finished iterations and said so, or it was still waiting
            return {"stopped": True}
    evals = [r for r in result["metrics"] if "eval_mean" in r]
    # Printed here, not by the driver, so it follows the run's last iteration line in the log.
    print(f"Done: {len(result['metrics'])} iterations" + (
        f", eval {evals[-1]['eval_mean']:.1f} ± {evals[-1]['eval_std']:.1f} after "
        f"{evals[-1]['episodes']} episodes" if evals else ""), flush=True)
    return {"iterations": len(result["metrics"])}
