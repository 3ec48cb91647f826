"""Run `python -m planet_colab …` with a fault planted: SIGKILL at an exact point of the run.

Usage: python tests/fault_launcher.py KIND N -- <planet_colab args>
KIND is `checkpoint` (killed after the checkpoint's temporary is written, before its rename),
`episode` (the same for an episode file) or `train_step` (just before the N-th gradient step);
`slow` is no fault: every gradient step first sleeps N milliseconds (a trainer that stays busy).

Usage: python tests/fault_launcher.py ray-workers MARKS KIND:N:RUN[,KIND:N:RUN…] -- sweep <args>
plants, in every Ray worker the sweep starts, a SIGKILL at the N-th `checkpoint` or `episode` write
of the run whose directory ends in RUN (e.g. `smoke/seed_1`). Each fault fires once per sweep: it
leaves a file in the folder MARKS before it kills, and a retried worker finds it there.
PLANET_COLAB_TEST_PRESETS='{"name": {...}}' adds presets (e.g. a second smoke-sized one).
"""

import json
import os
import runpy
import signal
import sys
import time
from pathlib import Path

PATTERNS = {"checkpoint": "ckpt_", "episode": "episode_"}
FAULTS_ENV, MARKS_ENV = "PLANET_COLAB_TEST_FAULTS", "PLANET_COLAB_TEST_FAULT_MARKS"
PRESETS_ENV = "PLANET_COLAB_TEST_PRESETS"  # JSON {name: overrides}: extra presets for this process


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(kind: str, n: int) -> None:
    """Plant a SIGKILL at the n-th (1-based) occurrence of `kind`."""
    count = 0

    def hit() -> bool:
        nonlocal count
        count += 1
        return count == n

    if kind in ("train_step", "slow"):
        import planet_colab.train as train

        real_step = train.train_step

        def step(*args, **kwargs):
            if kind == "slow":
                time.sleep(n / 1000)
            elif hit():
                _kill()
            return real_step(*args, **kwargs)

        train.train_step = step
        return
    pattern = PATTERNS[kind]
    for name in ("replace", "rename"):
        real = getattr(os, name)

        def renamer(src, dst, *args, _real=real, **kwargs):
            if os.path.basename(os.fspath(dst)).startswith(pattern) and hit():
                _kill()
            return _real(src, dst, *args, **kwargs)

        setattr(os, name, renamer)


def plant_in_ray_worker() -> None:
    """Ray's worker_process_setup_hook: plant the faults named in the environment in this worker."""
    marks = Path(os.environ[MARKS_ENV])
    faults = [(PATTERNS[kind], int(n), os.sep + run.replace("/", os.sep) + os.sep)
              for kind, n, run in (f.split(":") for f in os.environ[FAULTS_ENV].split(","))]
    counts = [0] * len(faults)

    def fire(dst) -> None:
        dst = os.fspath(dst)
        for i, (pattern, n, run) in enumerate(faults):
            if os.path.basename(dst).startswith(pattern) and run in dst:
                counts[i] += 1
                mark = marks / f"fault_{i}"
                if counts[i] == n and not mark.exists():
                    mark.write_text(dst)
                    _kill()

    for name in ("replace", "rename"):
        real = getattr(os, name)

        def renamer(src, dst, *args, _real=real, **kwargs):
            fire(dst)
            return _real(src, dst, *args, **kwargs)

        setattr(os, name, renamer)


def _plant_in_ray_workers(marks: str, spec: str) -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # as the sweep sets it, for Ray is imported here first
    import ray

    os.environ[FAULTS_ENV], os.environ[MARKS_ENV] = spec, marks
    # Ray's workers import the hook by name, so they need this folder on their path.
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    real_init = ray.init

    def init(*args, **kwargs):
        runtime_env = dict(kwargs.pop("runtime_env", None) or {})
        runtime_env["worker_process_setup_hook"] = "fault_launcher.plant_in_ray_worker"
        return real_init(*args, runtime_env=runtime_env, **kwargs)

    ray.init = init


if __name__ == "__main__":
    if os.environ.get(PRESETS_ENV):  # presets only a test needs (the workers get whole configs)
        from planet_colab.config import PRESETS

        PRESETS.update(json.loads(os.environ[PRESETS_ENV]))
    if sys.argv[1] == "ray-workers":
        marks, spec, sep, *rest = sys.argv[2:]
        assert sep == "--", "usage: fault_launcher.py ray-workers MARKS SPEC -- ARGS"
        _plant_in_ray_workers(marks, spec)
    else:
        kind, n, sep, *rest = sys.argv[1:]
        assert sep == "--", "usage: fault_launcher.py KIND N -- ARGS"
        install(kind, int(n))
    sys.argv = ["planet_colab", *rest]
    runpy.run_module("planet_colab", run_name="__main__", alter_sys=True)
