"""What a preset's learning curve is held against: PlaNet's and Dreamer's published returns, a random policy.

`PUBLISHED_100K` holds the returns reported after 100k environment steps for the DeepMind Control
tasks, keyed by this package's preset names; `random_policy_return` measures a uniform-random policy on
a preset's environment, for a task without a published figure (half_cheetah). sweep-report draws both
as horizontal lines and puts them in its benchmark table. `zero_policy_returns` plays an evaluation's own
environment seeds with zero actions: what the environment pays for doing nothing (cup_catch sometimes
starts with the ball in the cup), beside what the agent earned on the same seeds.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from planet_colab.config import Config

__all__ = ["PUBLISHED_100K", "PUBLISHED_SOURCE", "published_100k", "random_policy_return",
           "RANDOM_POLICY_EPISODES", "ZeroAgent", "zero_policy_returns"]

# Average return after 100k environment steps (100 episodes of 1000 steps) on the pixel-based DeepMind
# Control tasks. Dreamer: CURL (Srinivas, Laskin & Abbeel, 2020), Table 1, "100K step scores".
# PlaNet: the larger of the two published PlaNet columns at 100k steps, CURL's Table 1 and DrQ's
# (Kostrikov, Yarats & Fergus, 2020, "Image Augmentation Is All You Need", Table 1), so that the
# reference is never the weaker of two reports. Gymnasium's HalfCheetah-v5 (half_cheetah) has none.
PUBLISHED_100K: dict[str, dict[str, float]] = {
    "cartpole_swingup": {"planet": 303.0, "dreamer": 326.0},
    "reacher_easy": {"planet": 140.0, "dreamer": 314.0},
    "cheetah_run": {"planet": 165.0, "dreamer": 235.0},
    "finger_spin": {"planet": 136.0, "dreamer": 341.0},
    "cup_catch": {"planet": 198.0, "dreamer": 246.0},
    "walker_walk": {"planet": 224.0, "dreamer": 277.0},
}
PUBLISHED_SOURCE = ("100k environment steps; PlaNet: the larger of CURL's and DrQ's Table 1 columns; "
                    "Dreamer: CURL's Table 1")
RANDOM_POLICY_EPISODES = 10  # as many as a preset's evaluation (eval_episodes' default)


def published_100k(preset: str) -> dict[str, Any] | None:
    """PlaNet's and Dreamer's published 100k-step returns for `preset` with their source, or None."""
    if preset not in PUBLISHED_100K:
        return None
    return {**PUBLISHED_100K[preset], "steps": 100_000, "source": PUBLISHED_SOURCE}


def random_policy_return(config: Config, episodes: int = RANDOM_POLICY_EPISODES,
                         say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Mean ± std (ddof 0) of a uniform-random policy's return over `episodes` distinct env seeds.

    Measured as an evaluation is (agent.evaluate): each episode on its own environment seed derived from
    (config.seed, purpose, k), at the config's action repeat and episode length; actions uniform in the
    action space. The keys are bench learn's random baseline's, (seed, "random_baseline", k), so a preset
    measured here and on a bench learn page gives the same numbers. Costs `episodes` episodes of physics
    and rendering (half_cheetah's 10: 98 s on a 2-core CPU shared with two training runs); `say` hears a
    line before and after.
    """
    from planet_colab.checks import positive_int
    from planet_colab.env import make_env_from_config, run_random_episode
    from planet_colab.seeding import derive_seed, numpy_rng

    positive_int("episodes", episodes)
    if say is not None:
        say(f"Measuring {config.preset}'s random policy: {episodes} episodes of {config.episode_len} steps "
            f"({config.env_name}, action repeat {config.action_repeat}): {episodes * config.episode_len:,} frames "
            "of physics and rendering, 1–2 min for half_cheetah …")
    start = time.perf_counter()
    env = make_env_from_config(config)
    try:
        returns = []
        for k in range(episodes):
            steps = run_random_episode(env, numpy_rng(config.seed, "random_baseline", k),
                                       env_seed=derive_seed(config.seed, "random_baseline", k, "env"))
            returns.append(float(sum(steps["reward"])))  # summed as bench learn sums: equal to the last bit
    finally:
        env.close()
    result = {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "episodes": episodes,
              "returns": returns, "seed": config.seed, "env_name": config.env_name,
              "action_repeat": config.action_repeat, "max_episode_steps": config.max_episode_steps}
    if say is not None:
        say(f"{config.preset}'s random policy: {result['mean']:.1f} ± {result['std']:.1f} over {episodes} "
            f"episodes ({time.perf_counter() - start:.0f} s)")
    return result


class ZeroAgent:
    """Acts with zeros whatever it sees (agent.run_episode's agent interface)."""

    def __init__(self, action_shape: tuple[int, ...]) -> None:
        self.action = np.zeros(action_shape, dtype=np.float32)

    def reset(self) -> None:
        """Nothing to forget between episodes."""

    def act(self, obs: np.ndarray, *, explore: bool, generator: Any = None) -> np.ndarray:
        """The zero action."""
        return self.action.copy()


def zero_policy_returns(config: Config, iteration: int, episodes: int, env: Any = None) -> list[float]:
    """Returns of zero actions on the environment seeds of the evaluation after `iteration` (agent.evaluate's).

    Episode k plays env seed (config.seed, "eval", iteration, k) for at most config.episode_len steps,
    exactly as that evaluation's episode k did; `env` (else the config's own, made and closed here).
    """
    from planet_colab.agent import run_episode
    from planet_colab.checks import positive_int
    from planet_colab.env import make_env_from_config
    from planet_colab.seeding import derive_seed, torch_generator

    positive_int("episodes", episodes)
    own_env = env is None
    if own_env:
        env = make_env_from_config(config)
    try:
        agent, returns = ZeroAgent(env.action_space.shape), []
        for k in range(episodes):
            keys = (config.seed, "eval", iteration, k)
            steps = run_episode(env, agent, env_seed=derive_seed(*keys, "env"), generator=torch_generator(*keys),
                                explore=False, max_steps=config.episode_len)
            returns.append(float(steps["return"]))
    finally:
        if own_env:
            env.close()
    return returns
