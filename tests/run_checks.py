"""What "ends exactly like an uninterrupted run" means, for the tests that kill or resume runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from planet_colab.storage import EpisodeStorage


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
