"""One iteration's train and collect phases in CPU seconds, with only the API that every version since
the first published cartpole result has: a standalone script, so that `bench versus` can run it against
an older checkout of the package (its folder first on PYTHONPATH) as well as against this one.

`python planet_colab/bench/iteration_probe.py '{"preset": …, "changes": {…}, "threads": 1}'` prints one
JSON line: train_cpu_s, collect_cpu_s (and their wall seconds), train_steps, agent_steps, the config.
Deliberately free of `planet_colab.bench` imports: the package it runs against may not have them.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any, Callable


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """fn's result, its process CPU seconds and its wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def probe(preset: str, changes: dict[str, Any], threads: int) -> dict[str, Any]:
    """Collect the seed episodes in a temporary run, then time iteration 1's train and collect phases."""
    import torch

    torch.set_num_threads(threads)
    import planet_colab
    from planet_colab.env import make_env_from_config
    from planet_colab.run import Run
    from planet_colab.train import collect_iteration, train_iteration, training_data

    with tempfile.TemporaryDirectory(prefix="iteration_probe_") as tmp:
        run = Run.open(tmp, preset, changes=changes)
        config = run.config
        with run.own():
            run.collect_seed_episodes(progress=False)
            state = run.restore_training()
            dataset, _ = training_data(run, config, 0)
            losses, train_cpu, train_wall = _timed(lambda: train_iteration(state, dataset, config, 0))
            env = make_env_from_config(config)
            try:
                out, collect_cpu, collect_wall = _timed(
                    lambda: collect_iteration(run, env, state, config, 0, progress=False))
            finally:
                env.close()
    return {"package": planet_colab.__file__, "precision": state.precision, "threads": torch.get_num_threads(),
            "train_cpu_s": train_cpu, "train_wall_s": train_wall, "collect_cpu_s": collect_cpu,
            "collect_wall_s": collect_wall, "train_steps": losses["train_steps"] + losses["skipped_steps"],
            "agent_steps": out["lengths"][0], "config": config.to_dict() if hasattr(config, "to_dict")
            else dict(vars(config))}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(json.dumps(probe(spec["preset"], spec.get("changes", {}), spec.get("threads", 1))))
