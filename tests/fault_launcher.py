"""Run `python -m planet_colab …` with a fault planted: SIGKILL at an exact point of the run.

Usage: python tests/fault_launcher.py KIND N -- <planet_colab args>
KIND is `checkpoint` (killed after the checkpoint's temporary is written, before its rename),
`episode` (the same for an episode file) or `train_step` (just before the N-th gradient step).
"""

import os
import runpy
import signal
import sys


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(kind: str, n: int) -> None:
    """Plant a SIGKILL at the n-th (1-based) occurrence of `kind`."""
    count = 0

    def hit() -> bool:
        nonlocal count
        count += 1
        return count == n

    if kind == "train_step":
        import planet_colab.train as train

        real_step = train.train_step

        def step(*args, **kwargs):
            if hit():
                _kill()
            return real_step(*args, **kwargs)

        train.train_step = step
        return
    pattern = {"checkpoint": "ckpt_", "episode": "episode_"}[kind]
    for name in ("replace", "rename"):
        real = getattr(os, name)

        def renamer(src, dst, *args, _real=real, **kwargs):
            if os.path.basename(os.fspath(dst)).startswith(pattern) and hit():
                _kill()
            return _real(src, dst, *args, **kwargs)

        setattr(os, name, renamer)


if __name__ == "__main__":
    kind, n, sep, *rest = sys.argv[1:]
    assert sep == "--", "usage: fault_launcher.py KIND N -- ARGS"
    install(kind, int(n))
    sys.argv = ["planet_colab", *rest]
    runpy.run_module("planet_colab", run_name="__main__", alter_sys=True)
