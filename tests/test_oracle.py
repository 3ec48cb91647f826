"""The oracle benchmark plans through Pendulum's true dynamics: they must be gymnasium's own."""

import gymnasium as gym
import numpy as np

from planet_colab.bench.oracle import oracle_cem, pendulum_step


def test_oracle_dynamics_match_gymnasium_pendulum():
    env = gym.make("Pendulum-v1")
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        th, thdot = env.unwrapped.state
        u = rng.uniform(-2, 2)
        new_th, new_thdot, reward = pendulum_step(np.array([th]), np.array([thdot]), np.array([u]))
        _, env_reward, *_ = env.step(np.array([u], dtype=np.float32))
        np.testing.assert_allclose(env.unwrapped.state, [new_th[0], new_thdot[0]], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(env_reward, reward[0], rtol=1e-5, atol=1e-5)


def test_oracle_pushes_a_resting_pendulum_and_stays_in_bounds():
    rng = np.random.default_rng(0)
    # Hanging straight down at rest: any swing beats staying put, so the first action is a push.
    a = oracle_cem(np.pi, 0.0, horizon=12, candidates=200, iters=4, top_k=20, action_repeat=2, rng=rng)
    assert -1.0 <= a <= 1.0 and abs(a) > 0.3
