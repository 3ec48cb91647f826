"""Acting loop: belief filtering with the previous action, exploration only while collecting,
reproducible collection that the dataset loads, evaluation on distinct seeds without noise."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from planet_colab import agent as agent_module
from planet_colab.agent import Agent, collect_experience, evaluate
from planet_colab.config import get_config
from planet_colab.dataset import EpisodeDataset, collate_episode_batch
from planet_colab.env import make_env_from_config
from planet_colab.models import WorldModel
from planet_colab.planner import CEMPlanner
from planet_colab.storage import EpisodeStorage


class FakePixelEnv(gym.Env):
    """Random 64×64×3 frames from the reset seed; reward -|a|; truncates after `length` steps."""

    def __init__(self, action_dim: int = 1, length: int = 5) -> None:
        self.action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
        self.observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.length = length
        self.reset_seeds: list[int | None] = []
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        self.reset_seeds.append(seed)
        self.rng = np.random.default_rng(seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return self.rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def step(self, action):
        self.actions.append(np.array(action))
        self.t += 1
        return self._obs(), -float(np.abs(action).sum()), False, self.t >= self.length, {}


@pytest.fixture(scope="module")
def config():
    return get_config("smoke", max_episode_steps=12)  # 6 agent steps per episode


@pytest.fixture(scope="module")
def model(config):
    torch.manual_seed(0)
    return WorldModel(1, config)


@pytest.fixture(scope="module")
def planner(config):
    return CEMPlanner.from_config(config, 1)


def test_agent_returns_an_action_in_bounds_and_filters_with_the_previous_action(model, planner, config,
                                                                               monkeypatch):
    seen = []
    real_obs_step = model.obs_step

    def spy(state, action, embed, generator=None):
        seen.append(action.clone())
        return real_obs_step(state, action, embed, generator)

    monkeypatch.setattr(model, "obs_step", spy)
    agent = Agent(model, planner, config)
    env = FakePixelEnv()
    obs, _ = env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    actions = [agent.act(obs, explore=True, generator=gen) for _ in range(3)]
    for action in actions:
        assert action.shape == (1,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
    # s_0 from a zero action; s_t filters o_t with a_{t-1} (the models' time alignment)
    assert torch.equal(seen[0], torch.zeros(1, 1))
    assert [s.item() for s in seen[1:]] == pytest.approx([a.item() for a in actions[:2]])
    agent.reset()
    agent.act(obs, explore=False, generator=gen)
    assert torch.equal(seen[-1], torch.zeros(1, 1))


def test_exploration_noise_only_when_exploring(model, planner, config):
    env = FakePixelEnv()
    obs, _ = env.reset(seed=1)

    def act(explore, cfg=config):
        agent = Agent(model, planner, cfg)
        return agent.act(obs, explore=explore, generator=torch.Generator().manual_seed(3))

    plan = act(False)
    assert np.array_equal(act(False), plan)
    assert not np.array_equal(act(True), plan)
    # Exploration is added after planning: with zero noise scale the explored action is the plan.
    assert np.array_equal(act(True, config.replace(expl_noise=0.0)), plan)


def test_bad_observation_is_refused(model, planner, config):
    with pytest.raises(ValueError, match="obs_uint8"):
        Agent(model, planner, config).act(np.zeros((64, 64, 3), np.float32), explore=False)


def test_collected_episodes_load_in_the_dataset_and_repeat_bit_for_bit(model, planner, config, tmp_path):
    env = make_env_from_config(config)
    model.train()
    first = collect_experience(env, model, planner, EpisodeStorage(tmp_path / "a"), 2, config,
                               iteration=3, progress=False)
    assert model.training  # acting switched to eval mode and back
    assert first["lengths"] == [config.episode_len] * 2
    assert len(first["paths"]) == 2 and all(p.exists() for p in first["paths"])
    storage = EpisodeStorage(tmp_path / "a")
    episode = storage.load_episode(first["paths"][0])
    assert episode["obs"].shape == (config.episode_len, 64, 64, 3) and episode["obs"].dtype == np.uint8
    assert np.all(np.abs(episode["action"]) <= 1)
    assert first["returns"][0] == pytest.approx(float(episode["reward"].sum()), rel=1e-5)
    assert not episode["terminal"].any()  # Pendulum only truncates

    data = EpisodeDataset(storage, config.seq_len, 4, seed=0)
    obs, action, reward, terminal = collate_episode_batch([data[i] for i in range(4)])
    assert obs.shape == (config.seq_len, 4, 64, 64, 3) and action.shape == (config.seq_len, 4, 1)

    # A resumed run re-collects iteration 3 exactly; another iteration explores differently.
    again = collect_experience(env, model, planner, EpisodeStorage(tmp_path / "b"), 2, config,
                               iteration=3, progress=False)
    other = collect_experience(env, model, planner, EpisodeStorage(tmp_path / "c"), 1, config,
                               iteration=4, progress=False)
    for a, b in zip(first["paths"], again["paths"]):
        ea, eb = storage.load_episode(a), EpisodeStorage(tmp_path / "b").load_episode(b)
        for key in ("obs", "action", "reward", "terminal"):
            assert np.array_equal(ea[key], eb[key]), key
    assert first["returns"] == again["returns"]
    eo = EpisodeStorage(tmp_path / "c").load_episode(other["paths"][0])
    assert not np.array_equal(episode["action"], eo["action"])
    env.close()


def test_evaluation_uses_distinct_env_seeds_and_no_exploration(model, planner, config, monkeypatch):
    flags = []
    real_act = Agent.act

    def spy(self, obs, explore, generator=None):
        flags.append(explore)
        return real_act(self, obs, explore, generator)

    monkeypatch.setattr(agent_module.Agent, "act", spy)
    env = FakePixelEnv(length=4)
    result = evaluate(model, planner, config, env=env, num_episodes=3, seed_key=7, record_frames=True)
    assert len(set(env.reset_seeds)) == 3 and None not in env.reset_seeds
    assert flags and not any(flags)
    assert len(result["returns"]) == 3 and result["lengths"] == [4, 4, 4]
    assert result["mean"] == pytest.approx(np.mean(result["returns"]))
    assert result["std"] == pytest.approx(np.std(result["returns"]))
    assert [f.shape for f in result["frames"]] == [(5, 64, 64, 3)] * 3  # first obs + one per step
    assert all(f.dtype == np.uint8 for f in result["frames"])

    # Same key → same seeds and returns (comparable evaluations); another key → other seeds.
    env2 = FakePixelEnv(length=4)
    assert evaluate(model, planner, config, env=env2, num_episodes=3, seed_key=7)["returns"] == result["returns"]
    env3 = FakePixelEnv(length=4)
    evaluate(model, planner, config, env=env3, num_episodes=3, seed_key=8)
    assert env2.reset_seeds == env.reset_seeds and not set(env3.reset_seeds) & set(env.reset_seeds)


def test_collection_seeds_each_episode_differently_and_a_partial_rerun_continues_the_sequence(
        model, planner, config, tmp_path):
    env = FakePixelEnv(length=3)
    whole = collect_experience(env, model, planner, EpisodeStorage(tmp_path / "a"), 3, config,
                               iteration=0, progress=False)
    assert len(set(env.reset_seeds)) == 3
    # A run killed after storing episode 0 of this iteration re-collects episodes 1 and 2 only.
    rest_env = FakePixelEnv(length=3)
    rest = collect_experience(rest_env, model, planner, EpisodeStorage(tmp_path / "b"), 2, config,
                              iteration=0, progress=False, first_episode=1)
    assert rest_env.reset_seeds == env.reset_seeds[1:]
    assert rest["returns"] == whole["returns"][1:]


def test_evaluate_makes_the_configs_env_and_refuses_bad_counts(model, planner, config):
    result = evaluate(model, planner, config.replace(max_episode_steps=4, seq_len=2), num_episodes=1, seed_key=0)
    assert result["lengths"] == [2]
    with pytest.raises(ValueError, match="num_episodes"):
        evaluate(model, planner, config, num_episodes=0, seed_key=0)


def test_a_warm_started_plan_starts_fresh_each_episode_so_a_rerun_repeats_it(model, config, tmp_path):
    warm = config.replace(plan_warm_start=True)
    planner = CEMPlanner.from_config(warm, 1)
    agent = Agent(model, planner, warm)
    agent.act(np.zeros((64, 64, 3), np.uint8), explore=False, generator=torch.Generator().manual_seed(0))
    assert agent.start is not None and agent.start[0].shape == (warm.horizon, 1, 1)
    agent.reset()
    assert agent.start is None

    whole = collect_experience(FakePixelEnv(length=4), model, planner, EpisodeStorage(tmp_path / "a"), 2, warm,
                               iteration=0, progress=False)
    # A run killed after episode 0 re-collects episode 1 alone: no plan may carry over between episodes.
    rest = collect_experience(FakePixelEnv(length=4), model, planner, EpisodeStorage(tmp_path / "b"), 1, warm,
                              iteration=0, progress=False, first_episode=1)
    assert rest["returns"] == whole["returns"][1:]
    cold = collect_experience(FakePixelEnv(length=4), model, planner, EpisodeStorage(tmp_path / "c"), 2, config,
                              iteration=0, progress=False)
    assert cold["returns"] != whole["returns"]  # the option is on: the warm plans act differently
