"""What "ends exactly like an uninterrupted run" means, for the tests that kill or resume runs, and
the environment the child processes of those tests start with."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from planet_colab.storage import EpisodeStorage

ROOT = Path(__file__).resolve().parents[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    """os.environ for a child Python: this checkout first on PYTHONPATH, one thread, a fixed hash seed,
    headless SDL, no run directory or Ray cluster inherited from the caller; then `extra`."""
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy", PYTHONHASHSEED="0",
               OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for name in ("PLANET_COLAB_RUN_DIR", "RAY_ADDRESS"):
        env.pop(name, None)
    return {**env, **extra}


def final_weights(run_dir: Path, iterations: int) -> dict[str, torch.Tensor]:
    """The model weights checkpointed after the run's last iteration (files count from 0)."""
    name = f"ckpt_{iterations - 1:06d}.pt"
    return torch.load(run_dir / "checkpoints" / name, weights_only=True, map_location="cpu")["model"]


def assert_same_run(run_dir: Path, reference: Path, iterations: int) -> None:
    """Both runs stored the same episodes, array for array, and ended with bit-identical weights."""
    storage, theirs = EpisodeStorage(run_dir / "episodes"), EpisodeStorage(reference / "episodes")
    for mine, other in zip(storage.episode_paths, theirs.episode_paths, strict=True):
        a, b = storage.load_episode(mine), theirs.load_episode(other)
        for key in ("obs", "action", "reward", "terminal"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{run_dir} {mine.name}:{key}")
    final, expected = final_weights(run_dir, iterations), final_weights(reference, iterations)
    assert final.keys() == expected.keys()
    for key in expected:
        assert torch.equal(final[key], expected[key]), f"{run_dir}: weights differ at {key}"
