"""Environment benchmark: `python -m planet_colab.bench env --preset P [--steps N] [--set K=V …]`.

Steps the preset's environment with random actions and times, per agent step, the physics
(`action_repeat` environment steps) and the one 64×64 render, then times the preset's CEM planner
choosing an action (random weights: the cost does not depend on them) and reports the environment's
share of a collected episode's time (goal on the CPU: <= 10%). For a MuJoCo task it also draws the
same states (gymnasium's HalfCheetah: the same episode played again) with MuJoCo's default offscreen
settings and reports both costs and how many pixels differ (rendering.configure_offscreen). The last
line is JSON.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from planet_colab.__main__ import OneLineParser


def _time_env(env: Any, steps: int, seed: int) -> tuple[dict[str, float], list[np.ndarray], list[Any]]:
    """Per-agent-step ms of physics and render (wall and CPU); the frames and physics states seen."""
    rng = np.random.default_rng(seed)
    inner = env.env
    env.reset(seed=seed)
    wall = {"physics": 0.0, "render": 0.0}
    cpu = {"physics": 0.0, "render": 0.0}
    frames, states = [], []
    for _ in range(steps):
        action = env.scale_action(rng.uniform(-1, 1, env.action_space.shape))
        t0, c0 = time.perf_counter(), time.process_time()
        done = False
        for _ in range(env.action_repeat):
            _, _, terminated, truncated, _ = inner.step(action)
            if terminated or truncated:
                done = True
                break
        t1, c1 = time.perf_counter(), time.process_time()
        frames.append(env.render_pixels())
        t2, c2 = time.perf_counter(), time.process_time()
        wall["physics"] += t1 - t0
        wall["render"] += t2 - t1
        cpu["physics"] += c1 - c0
        cpu["render"] += c2 - c1
        states.append(_physics_state(env.unwrapped))
        if done:
            env.reset()
    result = {f"{k}_ms": 1000 * v / steps for k, v in wall.items()}
    result.update({f"{k}_cpu_ms": 1000 * v / steps for k, v in cpu.items()})
    return result, frames, states


def _physics_state(inner: Any) -> Any:
    """A suite task's physics state (drawn again with MuJoCo's defaults), else None."""
    suite_env = getattr(inner, "_env", None)
    return suite_env.physics.get_state().copy() if suite_env is not None else None


def _default_render(env_name: str, states: list[Any], size: int) -> tuple[float, float, list[np.ndarray]]:
    """Render a suite task's physics states with dm_control's defaults (physics.render): wall and CPU ms."""
    from planet_colab.dmc import _import_suite, parse_task

    domain, task = parse_task(env_name)
    env = _import_suite().load(domain, task)
    physics = env.physics
    frames = []
    wall = cpu = 0.0
    for state in states:
        physics.set_state(state)
        physics.forward()
        t0, c0 = time.perf_counter(), time.process_time()
        frames.append(physics.render(height=size, width=size, camera_id=0).copy())
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    physics.free()
    return 1000 * wall / len(states), 1000 * cpu / len(states), frames


def _default_render_by_replay(config: Any, steps: int) -> tuple[float, float, list[np.ndarray]]:
    """A gymnasium MuJoCo env's same episode (same seed, same actions) drawn with the model's own shadow map.

    Its states cannot be drawn again in a fresh env as the suite's are (re-set states render differently
    there even with equal settings), so the episode is played again instead: physics is deterministic."""
    import gymnasium as gym

    from planet_colab.env import make_env_from_config

    own = gym.make(config.env_name).unwrapped
    shadow = int(own.model.vis.quality.shadowsize)
    own.close()
    env = make_env_from_config(config, seed=0)
    env.unwrapped.model.vis.quality.shadowsize = shadow  # before the first render makes the GL context
    timing, frames, _ = _time_env(env, steps, seed=0)
    env.close()
    return timing["render_ms"], timing["render_cpu_ms"], frames


def _time_planner(config: Any, action_dim: int, frame: np.ndarray, plans: int) -> float:
    """Median ms of one agent action (filter the frame, CEM plan) at the config's sizes."""
    import torch

    from planet_colab.agent import Agent
    from planet_colab.models import WorldModel
    from planet_colab.planner import CEMPlanner
    from planet_colab.precision import resolve_precision

    torch.manual_seed(0)
    model = WorldModel(action_dim, config).eval()
    precision = resolve_precision(config.precision, torch.device("cpu"))
    agent = Agent(model, CEMPlanner.from_config(config, action_dim, precision=precision), config)
    g = torch.Generator().manual_seed(0)
    agent.act(frame, explore=True, generator=g)  # warm-up
    times = []
    for _ in range(plans):
        t0 = time.perf_counter()
        agent.act(frame, explore=True, generator=g)
        times.append(1000 * (time.perf_counter() - t0))
    return float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print human lines, then one JSON line."""
    parser = OneLineParser(prog="python -m planet_colab.bench env", description=__doc__)
    parser.add_argument("--preset", default="cartpole_swingup")
    parser.add_argument("--steps", type=int, default=100, help="agent steps timed (random actions)")
    parser.add_argument("--plans", type=int, default=3, help="timed planner actions (after a warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the planner")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override preset fields, e.g. --set candidates=500")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.plans < 1:
        parser.error("--steps and --plans must be positive")

    import torch

    from planet_colab.config import get_config, parse_override
    from planet_colab.dmc_install import uses_mujoco
    from planet_colab.env import make_env_from_config

    torch.set_num_threads(args.threads)
    config = get_config(args.preset, **dict(parse_override(o) for o in args.overrides))
    load_before = os.getloadavg()[0]
    env = make_env_from_config(config, seed=0)
    timing, frames, states = _time_env(env, args.steps, seed=0)
    action_dim = int(np.prod(env.action_space.shape))
    env.close()
    result: dict[str, Any] = {"preset": args.preset, "env_name": config.env_name,
                              "action_repeat": config.action_repeat, "steps": args.steps,
                              "mujoco_gl": os.environ.get("MUJOCO_GL"), **timing}
    print(f"env bench: {args.preset} ({config.env_name}, action repeat {config.action_repeat}), "
          f"{args.steps} agent steps, MUJOCO_GL={result['mujoco_gl']}, load average {load_before:.2f} "
          f"on {os.cpu_count()} CPUs, {torch.get_num_threads()} torch thread(s)")
    print(f"  physics: {timing['physics_ms']:.2f} ms per agent step ({timing['physics_cpu_ms']:.2f} CPU)"
          f"; render 64×64: {timing['render_ms']:.2f} ms per frame ({timing['render_cpu_ms']:.2f} CPU)")

    if uses_mujoco(config.env_name):
        if config.env_name.startswith("dmc:"):
            wall, cpu, default_frames = _default_render(config.env_name, states, config.image_size)
        else:
            wall, cpu, default_frames = _default_render_by_replay(config, args.steps)
        diff = np.abs(np.stack(frames).astype(np.int16) - np.stack(default_frames).astype(np.int16))
        result.update(default_render_ms=wall, default_render_cpu_ms=cpu,
                      pixels_differing_over_8=float((diff.max(-1) > 8).mean()),
                      mean_abs_pixel_diff=float(diff.mean()))
        print(f"  MuJoCo's default render settings: {wall:.2f} ms per frame ({cpu:.2f} CPU); "
              f"{100 * result['pixels_differing_over_8']:.3f}% of pixels differ by > 8/255, "
              f"mean |diff| {result['mean_abs_pixel_diff']:.3f}")

    plan_ms = _time_planner(config, action_dim, frames[-1], args.plans)
    env_ms = timing["physics_ms"] + timing["render_ms"]
    share = env_ms / (env_ms + plan_ms)
    result.update(planner_ms_per_action=plan_ms, env_ms_per_agent_step=env_ms, env_share=share,
                  env_share_ok=share <= 0.10, load_average=os.getloadavg()[0],
                  episode_s=config.episode_len * (env_ms + plan_ms) / 1000)
    print(f"  planner (CEM {config.candidates}×{config.optim_iters}, horizon {config.horizon}): "
          f"{plan_ms:.0f} ms per action")
    print(f"  environment share of a collected episode: {100 * share:.1f}% (goal <= 10%) "
          f"{'OK' if result['env_share_ok'] else 'MISSED'}; one episode ({config.episode_len} agent steps) "
          f"≈ {result['episode_s']:.0f} s")
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}))


if __name__ == "__main__":
    main()
