"""Run `python -m planet_colab …` with a fault planted: a SIGKILL or a stop at an exact point, Drive drops.

Usage: python tests/fault_launcher.py KIND N -- <planet_colab args>
(or `python -m fault_launcher …` with tests/ on PYTHONPATH: how `python -m planet_colab` ends after a stop
depends on running as `-m`, see planet_colab/stop_signals.py)
KIND is `checkpoint` (killed after the checkpoint's temporary is written, before its rename),
`episode` (the same for an episode file) or `train_step` (just before the N-th gradient step);
`slow` is no fault: every gradient step first sleeps N milliseconds (a trainer that stays busy).
`SIGTERM-in-write` or `SIGINT-in-write` sends that signal (a stop, not a kill) during the N-th
write call of the checkpoints' zip writer, counted over the process. `SIGTERM-at-import` or
`SIGINT-at-import` takes a module name for N and signals as that module's import begins; with
`MODULE+exec` it signals at the first exec() of source text after that (CPython's trap, see
planet_colab/stop_signals.py). `none` plants nothing.

Drive drops: PLANET_COLAB_TEST_DROPS='{"root": DIR, "drops": [[CALL, FIRST, TIMES, ERRNO], …]}'
makes calls FIRST … FIRST+TIMES-1 (1-based) of CALL on paths under DIR raise OSError(ERRNO), as a
dropped Drive mount does; CALL is one of DROP_CALLS. Combines with any KIND above.

Usage: python tests/fault_launcher.py ray-workers MARKS KIND:N:RUN[,KIND:N:RUN…] -- sweep <args>
plants, in every Ray worker the sweep starts, a SIGKILL at the N-th `checkpoint` or `episode` write
of the run whose directory ends in RUN (e.g. `smoke/seed_1`). Each fault fires once per sweep: it
leaves a file in the folder MARKS before it kills, and a retried worker finds it there.
PLANET_COLAB_TEST_PRESETS='{"name": {...}}' adds presets (e.g. a second smoke-sized one).
"""

import builtins
import errno
import io
import json
import os
import runpy
import signal
import sys
import time
from pathlib import Path
from typing import Callable

PATTERNS = {"checkpoint": "ckpt_", "episode": "episode_"}
FAULTS_ENV, MARKS_ENV = "PLANET_COLAB_TEST_FAULTS", "PLANET_COLAB_TEST_FAULT_MARKS"
PRESETS_ENV = "PLANET_COLAB_TEST_PRESETS"  # JSON {name: overrides}: extra presets for this process
DROPS_ENV = "PLANET_COLAB_TEST_DROPS"
# The file-system calls a run makes, by what a dropped mount can fail: pathlib's checks, stats and
# reads go through os.stat, os.listdir, os.mkdir, os.unlink and io.open.
DROP_CALLS = {"stat": [(os, "stat")], "listdir": [(os, "listdir")], "mkdir": [(os, "mkdir")],
              "open": [(io, "open"), (builtins, "open")], "replace": [(os, "replace"), (os, "rename")],
              "unlink": [(os, "unlink")], "truncate": [(os, "truncate")], "link": [(os, "link")]}


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def plant_drops(root: str | os.PathLike, drops: list, patch: Callable = setattr) -> dict[str, int]:
    """Make the calls of each (CALL, FIRST, TIMES, ERRNO) in `drops` under `root` fail as a dropped mount's
    do; `patch(owner, name, value)` replaces functions (monkeypatch.setattr undoes it). Returns the counts."""
    root = os.fspath(root)
    counts = dict.fromkeys(DROP_CALLS, 0)
    windows = [(call, first, first + times, code) for call, first, times, code in drops]

    def under_root(args: tuple) -> bool:
        return any(isinstance(a, (str, os.PathLike)) and os.fspath(a).startswith(root) for a in args[:2])

    for call, owners in DROP_CALLS.items():
        for owner, name in owners:
            real = getattr(owner, name)

            def flaky(*args, _call=call, _real=real, **kwargs):
                if under_root(args):
                    counts[_call] += 1
                    for c, start, end, code in windows:
                        if c == _call and start <= counts[_call] < end:
                            raise OSError(code, os.strerror(code), os.fspath(args[0]))
                return _real(*args, **kwargs)

            patch(owner, name, flaky)
    return counts


def _signal_in_write(sig: int, n: int) -> None:
    from planet_colab import safeio

    count = 0
    real_write = safeio._HashingWriter.write

    def write(self, data):
        nonlocal count
        if "ckpt_" in os.path.basename(getattr(self.f, "name", "")):
            count += 1
            if count == n:
                os.kill(os.getpid(), sig)
        return real_write(self, data)

    safeio._HashingWriter.write = write


def _signal_at_import(sig: int, spec: str) -> None:
    module, _, then = spec.partition("+")
    armed = fired = False

    def hook(event: str, args: tuple) -> None:
        nonlocal armed, fired
        if fired:
            return
        if event == "import" and args[0] == module:
            armed = True
            if not then:
                fired = True
                os.kill(os.getpid(), sig)
        elif armed and then and event == "exec" and getattr(args[0], "co_filename", "") == "<string>":
            fired = True  # source text (a module's own body is exec'd from a file's code object)
            code = args[0]

            def tracer(frame, what, arg):
                # Raised here, the stop surfaces inside the exec'd code, not in this hook.
                if frame.f_code is code:
                    sys.settrace(None)
                    os.kill(os.getpid(), sig)

            sys.settrace(tracer)

    sys.addaudithook(hook)


def install(kind: str, n: int | str) -> None:
    """Plant the fault `kind` at its n-th (1-based) occurrence (see the module's docstring)."""
    if kind == "none":
        return
    if kind.endswith(("-in-write", "-at-import")):
        sig, _, where = kind.partition("-")
        plant = _signal_in_write if where == "in-write" else _signal_at_import
        plant(getattr(signal, sig), int(n) if where == "in-write" else n)
        return
    n = int(n)
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
        if os.environ.get(DROPS_ENV):
            spec = json.loads(os.environ[DROPS_ENV])
            plant_drops(spec["root"], [(c, f, t, getattr(errno, e) if isinstance(e, str) else e)
                                       for c, f, t, e in spec["drops"]])
        install(kind, n)
    sys.argv = ["planet_colab", *rest]
    runpy.run_module("planet_colab", run_name="__main__", alter_sys=True)
