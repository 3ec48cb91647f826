"""`bench probe` pairs each stored frame with the physical state it was drawn from (replayed, then checked
against the stored frame) and asks a linear probe how much of that state the model's state holds."""

import json

import numpy as np
import pytest

from planet_colab.bench import probe
from planet_colab.bench.probe import episode_env_seed, replay_states, ridge_probe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from planet_colab.run import Run
    from planet_colab.train import train_planner

    root = tmp_path_factory.mktemp("probe")
    run = Run.open(root / "run", "smoke", changes={"total_iterations": 4})
    train_planner(run, progress=False)
    return root / "run"


def test_the_probe_finds_what_the_features_hold_and_not_what_they_do_not():
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(50, 12)) for _ in range(6)]
    held = rng.normal(size=(80, 12))
    weights = rng.normal(size=(12, 1))

    def label(features):
        """Column 0 is a linear read of the features (plus a little noise); column 1 is unrelated to them."""
        return np.hstack([features @ weights + 0.05 * rng.normal(size=(len(features), 1)),
                          rng.normal(size=(len(features), 1))])

    out = ridge_probe(x, [label(f) for f in x], held, label(held))
    assert out["r2"][0] > 0.95 and out["abs_error"][0] < 0.1 * out["spread"][0]
    assert out["r2"][1] < 0.1


def test_every_stored_episode_replays_to_its_own_frames_and_another_seed_does_not(trained):
    from planet_colab.env import make_env_from_config
    from planet_colab.run import Run
    from planet_colab.storage import episode_number

    run = Run.open(trained, new_ok=False)
    env = make_env_from_config(run.config)
    stored = run.storage.newest_episodes(run.storage.num_episodes)
    assert len(stored) == run.config.seed_episodes + 4 * run.config.collect_episodes  # seed and collected ones
    try:
        for path, episode in stored:
            states, diff = replay_states(env, episode_env_seed(run, episode_number(path)), episode)
            assert diff == 0.0 and len(states["obs"]) == len(episode["obs"])
            cos, sin = states["obs"][:, 0], states["obs"][:, 1]  # Pendulum's state: cos θ, sin θ, θ'
            np.testing.assert_allclose(cos ** 2 + sin ** 2, 1.0, rtol=1e-5)
        _, diff = replay_states(env, episode_env_seed(run, 1), stored[-1][1])
        assert diff > probe.REPLAY_TOLERANCE  # the labels of another episode are caught, not paired with these frames
    finally:
        env.close()


def test_the_bench_reads_the_run_without_writing_and_leaves_out_an_episode_that_does_not_replay(
        trained, capsys, monkeypatch):
    before = sorted((p.relative_to(trained), p.stat().st_mtime_ns) for p in trained.rglob("*"))
    seeds = probe.episode_env_seed
    # Episode 3 played from episode 1's seed: its frames no longer match, so it must be left out.
    monkeypatch.setattr(probe, "episode_env_seed", lambda run, n: seeds(run, 1 if n == 3 else n))
    probe.main(["--run-dir", str(trained), "--episodes", "6", "--held-out", "2"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted((p.relative_to(trained), p.stat().st_mtime_ns) for p in trained.rglob("*")) == before
    assert out["left_out"] == [3] and out["train_episodes"] == 3 and out["held_out"] == 2
    assert set(out["coordinates"]) == {"obs[0]", "obs[1]", "obs[2]"}
    for row in out["coordinates"].values():
        assert set(row) == {"r2", "r2_embedding", "r2_untrained", "abs_error", "spread"} and row["spread"] > 0


def test_too_few_episodes_is_a_usage_error(trained):
    from planet_colab.__main__ import UsageError

    with pytest.raises(UsageError, match="--episodes must be at least --held-out \\+ 2"):
        probe.main(["--run-dir", str(trained), "--episodes", "3", "--held-out", "2"])


def test_an_encoder_whose_relus_died_is_named_as_such(trained, capsys, monkeypatch):
    """An embedding that is one vector for every frame means a model that sees nothing: the bench says so."""
    import torch

    from planet_colab.run import Run

    main_args = ["--run-dir", str(trained), "--episodes", "6", "--held-out", "2"]
    probe.main(main_args)
    healthy = capsys.readouterr().out
    restore = Run.restore_agent

    def with_a_dead_encoder(self, device=None):
        parts = restore(self, device)
        last = [m for m in parts.model.encoder if isinstance(m, torch.nn.Conv2d)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.constant_(last.bias, -1.0)  # every unit of the last ReLU below zero for every frame
        return parts

    monkeypatch.setattr(Run, "restore_agent", with_a_dead_encoder)
    probe.main(main_args)
    dead = capsys.readouterr().out
    encoder = json.loads(dead.strip().splitlines()[-1])["encoder"]
    assert encoder["trained"] == {"spread": 0.0, "silent": 1.0} and encoder["untrained"]["spread"] > 0
    assert "the encoder (relu) is silent" in dead and "is silent" not in healthy
