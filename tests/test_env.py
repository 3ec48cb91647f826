"""The pixel env: 64×64×3 uint8, actions in [-1, 1], action repeat, truncation vs terminal; seed episodes."""

import math

import gymnasium as gym
import numpy as np
import pytest

from planet_colab.config import get_config
from planet_colab.env import collect_seed_episodes, make_env, make_env_from_config
from planet_colab.storage import EpisodeStorage


class CountdownEnv(gym.Env):
    """Terminates after `steps` steps; reward = the action's first component; renders 80×100 frames."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode=None, steps=3):
        self.render_mode, self.steps = render_mode, steps
        self.action_space = gym.spaces.Box(np.array([0, -10], np.float32), np.array([4, 10], np.float32))
        self.observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.t, self.actions = 0, []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.actions = 0, []
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        self.actions.append(np.array(action))
        return np.zeros(1, np.float32), float(action[0]), self.t >= self.steps, False, {}

    def render(self):
        return np.full((80, 100, 3), 10 * self.t, np.uint8)


gym.register("CountdownTest-v0", entry_point=CountdownEnv)


def test_observations_are_64x64x3_uint8_pixels():
    env = make_env("Pendulum-v1", action_repeat=2, seed=0, max_episode_steps=6)
    obs, _ = env.reset()
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (1,) and env.action_space.low[0] == -1 and env.action_space.high[0] == 1
    assert 0 < obs.mean() < 255  # something was drawn
    next_obs, *_ = env.step(np.array([1.0], np.float32))
    assert next_obs.shape == (64, 64, 3) and next_obs.dtype == np.uint8
    env.close()


def test_actions_in_minus_one_one_are_scaled_to_the_env_range():
    env = make_env("CountdownTest-v0", action_repeat=1, max_episode_steps=10)
    env.reset(seed=0)
    for action, expected in [([-1, -1], [0, -10]), ([1, 1], [4, 10]), ([0, 0.5], [2, 5]), ([3, -3], [4, -10])]:
        env.step(np.array(action, np.float32))
        np.testing.assert_allclose(env.unwrapped.actions[-1], expected)
    pendulum = make_env("Pendulum-v1", action_repeat=1, seed=0, max_episode_steps=5)
    pendulum.reset()
    pendulum.step(np.array([0.5], np.float32))
    assert pendulum.unwrapped.last_u == pytest.approx(1.0)  # Pendulum's torque range is [-2, 2]


def test_reward_is_summed_over_repeats_and_the_repeat_stops_at_the_end():
    env = make_env("CountdownTest-v0", action_repeat=2, max_episode_steps=10)
    env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step(np.array([1.0, 0.0], np.float32))  # env action 4.0, twice
    assert reward == pytest.approx(8.0) and not terminated
    _, reward, terminated, truncated, _ = env.step(np.array([1.0, 0.0], np.float32))  # 3rd env step ends it
    assert reward == pytest.approx(4.0) and terminated and not truncated
    assert env.unwrapped.t == 3


def test_reward_matches_the_raw_pendulum_stepped_twice():
    raw = gym.make("Pendulum-v1")
    raw.reset(seed=5)
    expected = sum(raw.step(np.array([-1.2], np.float32))[1] for _ in range(2))
    env = make_env("Pendulum-v1", action_repeat=2, seed=5)
    env.reset()
    assert env.step(np.array([-0.6], np.float32))[1] == pytest.approx(expected)


@pytest.mark.parametrize("max_episode_steps, action_repeat", [(7, 2), (6, 3), (5, 1)])
def test_time_limit_truncates_without_terminal_and_sets_episode_length(max_episode_steps, action_repeat):
    env = make_env("Pendulum-v1", action_repeat=action_repeat, seed=0, max_episode_steps=max_episode_steps)
    env.reset()
    flags = []
    while True:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        flags.append((terminated, truncated))
        if terminated or truncated:
            break
    assert len(flags) == math.ceil(max_episode_steps / action_repeat)
    assert flags[-1] == (False, True) and not any(t for t, _ in flags)


def test_non_square_frames_are_resized():
    env = make_env("CountdownTest-v0", action_repeat=1, max_episode_steps=10)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.max() == 0
    obs, *_ = env.step(np.zeros(2, np.float32))
    assert obs.shape == (64, 64, 3) and np.all(obs == 10)


def test_same_seed_same_pixels():
    def rollout(seed):
        env = make_env(seed=seed, max_episode_steps=4)
        frames = [env.reset()[0]]
        frames += [env.step(np.array([0.3], np.float32))[0] for _ in range(2)]
        return np.stack(frames)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="action_repeat"):
        make_env(action_repeat=0)
    with pytest.raises(ValueError, match="NoSuchEnv"):
        make_env("NoSuchEnv-v0")
    env = make_env(max_episode_steps=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(2, np.float32))


BOX2D_MISSING = 'Box2D is not installed, you can install it by run `pip install swig` followed by\n`pip install "gymnasium[box2d]"`'


def _needs_box2d(render_mode=None):
    raise gym.error.DependencyNotInstalled(BOX2D_MISSING)


gym.register("NeedsBox2DTest-v0", entry_point=_needs_box2d)
# gymnasium's MuJoCo envs live in gymnasium.envs.mujoco; this module is absent, as MuJoCo would be.
gym.register("NeedsMujocoTest-v0", entry_point="planet_colab_absent.envs.mujoco.cheetah:Cheetah")


def test_a_missing_package_gets_its_own_advice_and_only_mujoco_gets_the_dmc_extra(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")  # what make_env would choose for a MuJoCo env; restored after
    with pytest.raises(ValueError) as err:
        make_env("NeedsBox2DTest-v0")
    message = str(err.value)
    assert "\n" not in message and 'pip install "gymnasium[box2d]"' in message
    assert "MuJoCo" not in message and "[dmc]" not in message
    with pytest.raises(ValueError) as err:
        make_env("NeedsMujocoTest-v0")
    message = str(err.value)
    assert "\n" not in message and "needs MuJoCo" in message and 'pip install -e ".[dmc]"' in message


def test_make_env_from_config_uses_its_fields():
    config = get_config("smoke", action_repeat=3, max_episode_steps=20)
    env = make_env_from_config(config, seed=0)
    assert env.action_repeat == 3
    env.reset()
    steps = 1
    while not any(env.step(env.action_space.sample())[2:4]):
        steps += 1
    assert steps == config.episode_len == 7


def test_seed_episodes_are_collected_once_and_reproducibly(tmp_path):
    config = get_config("smoke", max_episode_steps=12, seq_len=6)  # 6 agent steps per episode
    store = EpisodeStorage(tmp_path / "episodes")
    assert collect_seed_episodes(config, store, progress=False) == config.seed_episodes == 2
    assert collect_seed_episodes(config, store, progress=False) == 0
    first = [store.load_episode(p) for p in store.episode_paths]
    assert [len(ep["reward"]) for ep in first] == [6, 6]
    assert not any(ep["terminal"].any() for ep in first)  # Pendulum only truncates
    assert not np.array_equal(first[0]["action"], first[1]["action"])

    store.path_for(2).unlink()  # e.g. a restart lost it: only that one is collected again, identically
    assert collect_seed_episodes(config, store, progress=False) == 1
    again = store.load_episode(store.path_for(2))
    for key in first[1]:
        np.testing.assert_array_equal(again[key], first[1][key])

    other = EpisodeStorage(tmp_path / "other")
    collect_seed_episodes(config, other, seed=1, progress=False)
    assert not np.array_equal(other.load_episode(other.path_for(1))["action"], first[0]["action"])
