"""`python -m planet_colab.bench oracle`: the preset's CEM planning through Pendulum's TRUE dynamics.

Separates the planner from the world model: if CEM with the preset's horizon, candidates, refits and
action repeat swings the pendulum up on the true dynamics, a learned-model run that does not is
limited by its model, not by the planning setup. `--set candidates=… optim_iters=… plan_warm_start=true
plan_warm_std=…` plans with other CEM settings, warm-started as the agent does (planner.warm_start).
Last line: JSON with the oracle's return and the CEM's candidate rollouts per agent step.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np

from planet_colab.__main__ import OneLineParser
from planet_colab.config import changes_from_args, get_config
from planet_colab.seeding import derive_seed, numpy_rng

# gymnasium's Pendulum-v1 constants (g, m, l, dt, max torque, max speed).
G, M, L, DT, MAX_TORQUE, MAX_SPEED = 10.0, 1.0, 1.0, 0.05, 2.0, 8.0


def pendulum_step(th: np.ndarray, thdot: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pendulum-v1's transition and reward, vectorised over candidates."""
    u = np.clip(u, -MAX_TORQUE, MAX_TORQUE)
    angle = ((th + np.pi) % (2 * np.pi)) - np.pi
    reward = -(angle ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2)
    thdot = np.clip(thdot + (3 * G / (2 * L) * np.sin(th) + 3.0 / (M * L ** 2) * u) * DT, -MAX_SPEED, MAX_SPEED)
    return th + thdot * DT, thdot, reward


def oracle_cem(th: float, thdot: float, horizon: int, candidates: int, iters: int, top_k: int,
               action_repeat: int, rng: np.random.Generator) -> float:
    """CEM as planner.py does it (clip to [-1, 1], refit to the top-k), on the true dynamics; first mean action."""
    return float(oracle_plan(th, thdot, horizon, candidates, iters, top_k, action_repeat, rng)[0])


def oracle_plan(th: float, thdot: float, horizon: int, candidates: int, iters: int, top_k: int,
                action_repeat: int, rng: np.random.Generator,
                start: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The whole mean plan (horizon,) of CEM on the true dynamics, from `start` = (mean, std) or N(0, 1)."""
    mean, std = (np.zeros(horizon), np.ones(horizon)) if start is None else start
    for _ in range(iters):
        actions = np.clip(mean + std * rng.standard_normal((candidates, horizon)), -1, 1)
        t, td, ret = np.full(candidates, th), np.full(candidates, thdot), np.zeros(candidates)
        for h in range(horizon):
            for _ in range(action_repeat):
                t, td, r = pendulum_step(t, td, MAX_TORQUE * actions[:, h])
                ret += r
        elite = actions[np.argsort(-ret)[:top_k]]
        mean, std = elite.mean(0), elite.std(0)
    return mean


def warm_start(plan: np.ndarray, std: float) -> tuple[np.ndarray, np.ndarray]:
    """planner.warm_start for one 1-D plan: shifted by a step, std `std`, a new last step N(0, 1)."""
    return np.append(plan[1:], 0.0), np.append(np.full(len(plan) - 1, float(std)), 1.0)


def main(argv: list[str] | None = None) -> None:
    """Run noise-free oracle episodes on distinct seeds and print their returns."""
    p = OneLineParser(prog="python -m planet_colab.bench oracle")
    p.add_argument("--preset", default="pendulum")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config changes, e.g. candidates=250 optim_iters=3 plan_warm_start=true")
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error("--episodes must be positive")
    config = get_config(args.preset, **changes_from_args(args.overrides))
    if config.env_name != "Pendulum-v1":
        raise ValueError("the oracle knows only Pendulum-v1's dynamics")
    returns = []
    for k in range(args.episodes):
        env = gym.make("Pendulum-v1", max_episode_steps=config.max_episode_steps)
        env.reset(seed=derive_seed(config.seed, "oracle", k))
        rng = numpy_rng(config.seed, "oracle", k, "cem")
        total, done, start = 0.0, False, None
        while not done:
            th, thdot = env.unwrapped.state
            plan = oracle_plan(th, thdot, config.horizon, config.candidates, config.optim_iters, config.top_k,
                               config.action_repeat, rng, start)
            if config.plan_warm_start:
                start = warm_start(plan, config.plan_warm_std)
            a = float(plan[0])
            for _ in range(config.action_repeat):
                _, r, terminated, truncated, _ = env.step(np.array([MAX_TORQUE * a], dtype=np.float32))
                total += float(r)
                done = terminated or truncated
                if done:
                    break
        env.close()
        returns.append(total)
        print(f"episode {k}: return {total:.1f}")
    warm = f", warm std {config.plan_warm_std:g}" if config.plan_warm_start else ", cold"
    print(f"true-dynamics CEM (H{config.horizon}, J{config.candidates}, I{config.optim_iters}, "
          f"K{config.top_k}, repeat {config.action_repeat}{warm}): {np.mean(returns):.1f} ± {np.std(returns):.1f}")
    print(json.dumps({"bench": "oracle", "preset": args.preset, "oracle_mean_return": float(np.mean(returns)),
                      "oracle_std": float(np.std(returns)), "returns": returns,
                      "candidates": config.candidates, "optim_iters": config.optim_iters, "top_k": config.top_k,
                      "plan_warm_start": config.plan_warm_start, "plan_warm_std": config.plan_warm_std,
                      "rollouts_per_step": config.candidates * config.optim_iters}))
