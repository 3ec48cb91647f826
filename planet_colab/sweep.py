"""Many runs at once: presets × seeds, each an ordinary run directory trained as one Ray task.

`run_sweep(root, presets, seeds)` puts the run of (preset, seed) in `root/<preset>/seed_<seed>` and
trains it with `train_planner`, exactly as `python -m planet_colab train` would. What makes a sweep
resumable and fault-tolerant is what makes one run so: a run directory holds everything, and a run
resumed from its newest checkpoint ends bit for bit like one never stopped (on CPU). So running the
same sweep again skips finished runs and resumes the others, and a worker that dies mid-run is simply
started again by Ray (`max_retries`) on the same directory.

Ray is an optional dependency, imported only here; without an address it starts on this machine,
with one (or RAY_ADDRESS) it joins a cluster whose nodes all see `root` (NFS, a bucket, Drive).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from planet_colab import safeio
from planet_colab.checks import positive_int
from planet_colab.config import PRESETS, Config, get_config
from planet_colab.sweep_task import train_run

__all__ = ["SweepRun", "plan_sweep", "run_sweep", "run_dir_for", "INSTALL_HINT"]

INSTALL_HINT = 'pip install -e ".[sweep]"  (or: pip install ray)'
MAX_RETRIES = 3  # times Ray restarts a run whose worker process died (the run resumes each time)
STOP_GRACE_S = 120.0  # after Ctrl-C, how long the runs get to save their finished iterations
STALE_STOP_S = 24 * 3600.0  # a stop file this old was left by a sweep killed outright (SIGKILL, a lost runtime)


@dataclass(frozen=True)
class SweepRun:
    """One (preset, seed) of a sweep: its directory, the config it trains with, iterations done."""

    preset: str
    seed: int
    run_dir: Path
    config: Config
    done: int
    saved: bool = False  # whether the run's config.json already holds `config`

    @property
    def name(self) -> str:
        """`preset/seed_S`: the prefix of this run's progress lines."""
        return f"{self.preset}/seed_{self.seed}"

    @property
    def finished(self) -> bool:
        """Whether the newest checkpoint already holds every iteration of the config."""
        return self.done >= self.config.total_iterations


def run_dir_for(root: str | os.PathLike, preset: str, seed: int) -> Path:
    """Where the run of (preset, seed) lives under a sweep's root."""
    return Path(root) / preset / f"seed_{seed}"


def _repeated(values: Sequence[Any]) -> Any:
    return next((v for i, v in enumerate(values) if v in values[:i]), None)  # the first one listed twice


# Settings in which the seeds of one preset may differ: the run's length, when checkpoints are written
# and how many are kept (a resume is bit-identical wherever it starts), and how often it is evaluated
# (evaluations play on seeds of their own: tests/test_sweep.py checks that training does not move).
MAY_DIFFER = ("total_iterations", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints", "eval_every")


def _changes(iterations: int | None, eval_every: int | None) -> dict[str, int]:
    """The sweep's own settings as Config fields (None: the preset's or the stored run's)."""
    asked = {"total_iterations": iterations, "eval_every": eval_every}
    return {field: value for field, value in asked.items() if value is not None}


def _run_config(run_dir: Path, preset: str, seed: int, iterations: int | None,
                eval_every: int | None = None) -> tuple[Config, bool]:
    """The preset's config for a new run, or the stored one, checked; and whether config.json holds it."""
    fresh = get_config(preset, seed=seed, **_changes(iterations, eval_every))
    path = run_dir / "config.json"
    if not safeio.exists(path):
        return fresh, False
    try:
        stored = Config.load(path)
    except ValueError as e:
        problem = " ".join(str(e).split())
        named = problem if str(path) in problem else f"{path}: {problem}"
        raise ValueError(f"{named}; or use another --root") from None
    # Seeds of one preset are only comparable when they share every setting that shapes the results.
    diffs = [f"{f.name}: run has {getattr(stored, f.name)!r}, {preset} seed {seed} gives "
             f"{getattr(fresh, f.name)!r}" for f in fields(Config)
             if f.name not in MAY_DIFFER and getattr(stored, f.name) != getattr(fresh, f.name)]
    if diffs:
        more = f"; and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        raise ValueError(f"{run_dir} holds a run with another config ({'; '.join(diffs[:3])}{more}); "
                         "use another --root, or move that run away")
    wanted = stored.replace(**_changes(iterations, eval_every))
    return wanted, wanted == stored


def plan_sweep(root: str | os.PathLike, presets: Sequence[str], seeds: Sequence[int],
               iterations: int | None = None, eval_every: int | None = None) -> list[SweepRun]:
    """Check the grid and every run already under `root`; ValueError (one line) on bad input.

    Reads only: nothing is created or written, so a refused sweep leaves `root` as it was.
    """
    from planet_colab.checkpoint import latest_checkpoint_info

    if not presets or not seeds:
        raise ValueError("a sweep needs at least one preset and one seed")
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"unknown preset {unknown[0]!r}; choose from: {', '.join(sorted(PRESETS))}")
    for what, values in (("--presets", presets), ("--seeds", seeds)):
        twice = _repeated(values)
        if twice is not None:
            raise ValueError(f"{twice} is listed twice in {what}; list each once")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"seed {bad[0]!r} is not an integer >= 0")
    if iterations is not None:
        positive_int("the number of iterations (--iterations)", iterations)
    if eval_every is not None:
        positive_int("the evaluation cadence (--eval-every)", eval_every)
    root = Path(root)
    existing = next(p for p in (root, *root.parents) if p.exists())  # the folder the runs go under
    if not existing.is_dir():
        raise ValueError(f"the sweep's root (--root) {root} cannot be made: {existing} is a file, not a directory")
    runs = []
    for preset in presets:
        for seed in seeds:
            run_dir = run_dir_for(root, preset, seed)
            config, saved = _run_config(run_dir, preset, seed, iterations, eval_every)
            info = latest_checkpoint_info(run_dir) if safeio.is_dir(run_dir) else None
            done = info["start_iteration"] if info else 0
            if done > config.total_iterations:  # as `train` refuses it: a run never goes back
                raise ValueError(f"{run_dir} has already checkpointed {done} iterations, more than "
                                 f"--iterations {config.total_iterations}; ask for {done} or more")
            runs.append(SweepRun(preset, seed, run_dir, config, done, saved))
    return runs


def _import_ray() -> Any:
    # Ray groups log lines that differ only in numbers ("[repeated 2x]"): that would merge the
    # progress lines of different runs. Both settings must be in place before Ray is imported.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # no escape codes in logs and pipes
    try:
        import ray
    except ImportError:
        raise ImportError(f"the sweep needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on an address nothing listens at (ray.init would retry for minutes)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"the address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, the head "
                         "node's `ray start --head` address)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ValueError(f"cannot reach a Ray cluster at {address} ({reason}); start one there with "
                         "`ray start --head`, or leave out --address and RAY_ADDRESS to run on this "
                         "machine") from None


def _asked_address(address: str | None) -> str | None:
    """The cluster asked for (--address, else RAY_ADDRESS); None: start Ray here."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


def _cluster_address(address: str | None) -> str | None:
    """The cluster to join, checked reachable; None: start Ray here."""
    address = _asked_address(address)
    if address is not None:
        _check_reachable(address)
    return address


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at `address` (or RAY_ADDRESS), else start Ray here; True if started here.

    A Ray session this process already opened (e.g. `ray.init()` in a notebook) is used as it is.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    address = _cluster_address(address)
    with _keep_python_sigterm_handler():
        if address is None:
            # Ray starts its workers at nice 15, so a run got ~3% of a core beside three ordinary
            # processes on 2 cores (measured): the runs are this sweep's work, not background chores.
            os.environ.setdefault("RAY_worker_niceness", "0")
            # Small object store: runs exchange only their config and a summary, never tensors.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=128 * 2**20, log_to_driver=True)
            return True
        try:
            ray.init(address=address, log_to_driver=True)
        except ConnectionError as e:
            raise ValueError(f"cannot join the Ray cluster at {address} ({' '.join(str(e).split())[:200]});"
                             " a cluster with token authentication also needs RAY_AUTH_MODE=token and its "
                             "token here (~/.ray/auth_token or RAY_AUTH_TOKEN)") from None
    return False


@contextlib.contextmanager
def _keep_python_sigterm_handler() -> Iterator[None]:
    """ray.init installs a SIGTERM handler that aborts the driver (and every run's unfinished iteration);
    a Python handler chosen before it (the command line's: stop like Ctrl-C, the runs save) goes back in."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if callable(before) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, before)


def _check_local_gpu(gpus_per_run: float) -> None:
    """Refuse GPUs per run on a machine whose torch sees none, before Ray's start-up (tens of seconds)."""
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"--gpus-per-run {gpus_per_run:g} asks for a GPU, but torch on this machine sees none "
                         "(torch.cuda.is_available() is False); leave --gpus-per-run out to train on CPUs")


def _save_configs(todo: Sequence[SweepRun]) -> None:
    """Save each run's config as this sweep asks for it (new, or a new length) before Ray starts it,
    so that sweep-report lists a run still queued, at its new length. A run a live trainer holds is
    left to that trainer, which saves its own config."""
    from planet_colab.lease import held_by_live_trainer

    for run in todo:
        path = run.run_dir / "config.json"
        # A live trainer saves its own config; a lost one is recovered from the newest checkpoint, checked.
        if run.saved or (held_by_live_trainer(run.run_dir) if safeio.exists(path) else run.done):
            continue
        safeio.mkdir(run.run_dir, parents=True)
        run.config.save(path)


def _runs_at_once(ray: Any, cpus: int, gpus: float) -> int:
    """How many runs the cluster's CPUs and GPUs hold side by side; ValueError when not even one."""
    total = ray.cluster_resources()
    fits = []
    for key, need, flag in (("CPU", cpus, "--cpus-per-run"), ("GPU", gpus, "--gpus-per-run")):
        have = total.get(key, 0)
        if need > have:
            raise ValueError(f"each run asks for {need:g} {key}s ({flag}), more than the Ray cluster "
                             f"has ({have:g}); no run could ever start: lower {flag}")
        if need:
            fits.append(int(have // need))
    return min(fits)


def _describe(run: SweepRun) -> str:
    total = run.config.total_iterations
    if run.finished:
        return f"{run.name}: finished ({run.done} of {total} iterations), skipped"
    if run.done:
        return f"{run.name}: resumes after iteration {run.done} of {total} in {run.run_dir}"
    return f"{run.name}: {total} iterations in {run.run_dir}"


def _failure(error: BaseException) -> str:
    """One line for a run that failed: its own error's first line, or Ray's last (a lost worker)."""
    cause = getattr(error, "cause", None)
    lines = [line.strip() for line in str(cause or error).splitlines() if line.strip()] or [""]
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {lines[0]}"[:300]
    return f"{type(error).__name__}: {lines[-1]}"[:300]


def _wait_all(ray: Any, refs: dict[Any, SweepRun], say: Callable[[str], None]) -> dict[str, str]:
    """Collect every run's outcome as it ends: 'finished' or 'failed: why' (said at once)."""
    outcomes: dict[str, str] = {}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        run = refs[ready[0]]
        try:
            ray.get(ready[0])
        except Exception as e:  # the run's own error, or its worker lost more often than retried
            outcomes[run.name] = f"failed: {_failure(e)}"
            say(f"{run.name}: {outcomes[run.name]}")
        else:
            outcomes[run.name] = "finished"
    return outcomes


def _stop(ray: Any, refs: dict[Any, SweepRun], stop_file: Path, say: Callable[[str], None]) -> None:
    """Ctrl-C: each run stops at its next step and saves its finished iterations, as on Colab's Stop."""
    say(f"Stopping: the runs save their finished iterations (up to {STOP_GRACE_S:.0f} s; Ctrl-C again ends "
        "them at once)…")
    # Not ray.cancel: its KeyboardInterrupt, raised from another thread, sometimes never arrived
    # with two runs going (stop_request.py). The tasks watch for this file instead.
    try:
        safeio.write_atomic(stop_file, "This sweep was stopped; its runs save their finished iterations and "
                                       "end. The sweep deletes this file once they have.\n")
    except OSError as e:
        say(f"could not ask the runs to stop ({e}); they lose their unfinished iterations")
        return
    try:
        ray.wait(list(refs), num_returns=len(refs), timeout=STOP_GRACE_S)
    except KeyboardInterrupt:  # Ray's shutdown then ends the runs
        say("Ending the runs at once: a run that had not saved yet loses its unfinished iteration")
        return
    time.sleep(1.5)  # their last forwarded lines first


def _remove_stale_stop_files(root: Path) -> None:
    """Delete stop files that sweeps killed outright left behind (a live sweep deletes its own within minutes)."""
    for path in root.glob(".stop_sweep_*"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > STALE_STOP_S:
                path.unlink()


def run_sweep(root: str | os.PathLike, presets: Sequence[str], seeds: Sequence[int], *,
              iterations: int | None = None, eval_every: int | None = None,
              cpus_per_run: int = 1, gpus_per_run: float = 0.0,
              address: str | None = None, local_cpus: int | None = None,
              max_retries: int = MAX_RETRIES, say: Callable[[str], None] = print) -> dict[str, str]:
    """Train every (preset, seed) not yet finished under `root` as one Ray task each; resumable.

    `iterations` and `eval_every` apply to new runs and to runs already started (None: the preset's or
    the stored run's). `local_cpus` caps the CPUs a Ray started here may hand out (default: all of
    them), so that runs leave cores to other work. Returns {"preset/seed_S": "finished" | "skipped" |
    "failed: why"}. Bad input raises ValueError before anything starts; a missing Ray raises
    ImportError naming the install command.
    """
    positive_int("CPUs per run (--cpus-per-run)", cpus_per_run)
    if local_cpus is not None:
        positive_int("--local-cpus", local_cpus)
    if local_cpus is not None and cpus_per_run > local_cpus:
        raise ValueError(f"each run asks for {cpus_per_run} CPUs (--cpus-per-run), more than "
                         f"--local-cpus {local_cpus}; no run could ever start")
    if not gpus_per_run >= 0:
        raise ValueError(f"GPUs per run (--gpus-per-run) must be >= 0, got {gpus_per_run!r}")
    root = Path(root).absolute()  # the tasks get absolute paths: a worker need not share the driver's cwd
    runs = plan_sweep(root, presets, seeds, iterations, eval_every)
    ray = _import_ray()
    if not ray.is_initialized():
        if local_cpus is not None and _asked_address(address) is not None:
            raise ValueError("--local-cpus applies only when Ray starts on this machine; a cluster's "
                             "CPUs are set where it starts (`ray start --num-cpus N`)")
        _cluster_address(address)  # an unreachable cluster is refused before anything is said
        if gpus_per_run and _asked_address(address) is None:
            _check_local_gpu(gpus_per_run)
    for run in runs:
        say(_describe(run))
    outcomes = {run.name: "skipped" for run in runs if run.finished}
    todo = [run for run in runs if not run.finished]
    if not todo:
        say(f"Nothing to do: {'all runs are' if len(runs) > 1 else 'the run is'} finished.")
        return outcomes
    _remove_stale_stop_files(root)
    started_here = connect(address, num_cpus=local_cpus)
    # One name per sweep: a second sweep on the same root is not stopped with this one.
    stop_file = root / f".stop_sweep_{uuid.uuid4().hex[:12]}"
    try:
        at_once = _runs_at_once(ray, cpus_per_run, gpus_per_run)
        _save_configs(todo)
        # max_calls=1: each run in a fresh worker process, which imports the code on disk when the run
        # starts and inherits nothing of the run before it (its memory, torch's and oneDNN's caches).
        task = ray.remote(max_calls=1)(train_run)
        refs = {task.options(name=run.name, num_cpus=cpus_per_run, num_gpus=gpus_per_run,
                             max_retries=max_retries, retry_exceptions=False)
                .remote(run.config.to_dict(), str(run.run_dir), cpus_per_run, str(stop_file)): run
                for run in todo}
        t0 = time.monotonic()
        say(f"Started {len(todo)} run{'s' if len(todo) > 1 else ''} "
            f"({cpus_per_run} CPU{'s' if cpus_per_run > 1 else ''}"
            + (f", {gpus_per_run:g} GPU" if gpus_per_run else "") + " each"
            + (f"; {at_once} at a time, the others queued" if at_once < len(todo) else "")
            + "); one line per iteration per run follows, prefixed with its preset/seed")
        try:
            outcomes.update(_wait_all(ray, refs, say))
        except KeyboardInterrupt as stop:
            _stop(ray, refs, stop_file, say)
            say("Stopped; run the same sweep again to resume.")
            stop.reported = True  # type: ignore[attr-defined]  # the command line then adds nothing
            raise
    finally:
        time.sleep(1.5)  # Ray forwards the workers' lines with a lag: let the last ones arrive first
        if started_here:
            ray.shutdown()
        with contextlib.suppress(OSError):  # written only on Ctrl-C; its runs have ended by now
            stop_file.unlink(missing_ok=True)
    failed = [name for name, outcome in outcomes.items() if outcome.startswith("failed")]
    say(f"Sweep: {len(runs) - len(failed)} of {len(runs)} runs finished"
        + (f", {len(failed)} failed ({', '.join(failed)})" if failed else "")
        + f" in {time.monotonic() - t0:.0f} s; compare them with "
        f"`python -m planet_colab sweep-report --root {root}`")
    return outcomes
