"""`bench openloop`: the offline A/B that measured the free-nats / KL-balance fix for Pendulum."""

import json

import numpy as np
import pytest
import torch

from planet_colab.bench import openloop
from planet_colab.config import get_config
from planet_colab.models import WorldModel
from planet_colab.storage import EpisodeStorage


def add_episodes(root, count, length=20, seed=0):
    rng = np.random.default_rng(seed)
    store = EpisodeStorage(root / "episodes")
    for _ in range(count):
        obs = rng.integers(0, 256, (length, 64, 64, 3), dtype=np.uint8)
        store.add_episode(obs, rng.uniform(-1, 1, (length, 1)).astype(np.float32),
                          rng.normal(size=length).astype(np.float32), np.zeros(length, bool))
    return store


def test_errors_are_per_imagined_step_and_spread_is_the_true_rewards(tmp_path):
    store = add_episodes(tmp_path, 1)
    episode = store.load_episode(store.episode_paths[0])
    config = get_config("smoke")
    model = WorldModel(1, config)
    horizon = 4
    result = openloop.open_loop_errors(model, [episode], torch.Generator().manual_seed(0), config=config,
                                       horizon=horizon, every=5)
    assert all(len(v) == horizon for v in result.values())
    # Windows start at 0, 5, 10 (20 steps, 5 context + 4 imagined); the state reached by a_{t-1}
    # is scored against r_{t-1}, so window s covers rewards s+4 .. s+7.
    windows = [episode["reward"][s + 4:s + 8] for s in (0, 5, 10)]
    spread = np.mean([np.abs(w - w.mean()) for w in windows], 0)
    np.testing.assert_allclose(result["reward_abs_deviation_by_step"], spread.round(2), atol=1e-6)
    with pytest.raises(ValueError, match="long enough"):
        openloop.open_loop_errors(model, [episode], torch.Generator(), config=config, horizon=16)


def test_main_trains_on_some_episodes_and_scores_the_held_out_rest(tmp_path, capsys):
    add_episodes(tmp_path, 3)
    get_config("smoke").save(tmp_path / "config.json")
    openloop.main(["--run-dir", str(tmp_path), "--steps", "2", "--train-episodes", "2",
                   "--set", "free_nats=0.5", "kl_balance=0.8"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["held_out_episodes"] == 1 and summary["steps"] == 2
    assert summary["overrides"] == {"free_nats": 0.5, "kl_balance": 0.8}
    assert len(summary["open_loop_reward_abs_error_by_step"]) == get_config("smoke").horizon
    with pytest.raises(ValueError, match="need more than --train-episodes 3"):
        openloop.main(["--run-dir", str(tmp_path), "--steps", "2", "--train-episodes", "3"])
