"""Acting with the world model: filter each observation into a belief, plan with CEM, explore, store.

Every random draw of an episode (env reset, dequantisation noise, latent samples, CEM samples,
exploration noise) comes from streams derived from (config.seed, "collect" | "eval", key, episode),
so a resumed run re-collects bit for bit what an uninterrupted run would have collected.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from planet_colab.checks import positive_int
from planet_colab.config import Config
from planet_colab.env import make_env_from_config, record_step
from planet_colab.models import WorldModel, preprocess_obs
from planet_colab.planner import ACTION_HIGH, ACTION_LOW, CEMPlanner, warm_start
from planet_colab.precision import autocast_context, resolve_precision, select_device
from planet_colab.seeding import derive_seed, torch_generator
from planet_colab.stop_request import check_stop


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class Agent:
    """Keeps the belief over one episode: `reset()` at its start, then `act(obs)` once per step."""

    def __init__(self, model: torch.nn.Module, planner: Any, config: Config,
                 device: torch.device | str | None = None) -> None:
        self.model = model
        self.planner = planner
        self.config = config
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.action_dim = int(model.action_dim)
        self.precision = getattr(planner, "precision", config.precision)
        self.reset()

    def reset(self) -> None:
        """Start of an episode: zero belief, zero previous action (the model's training convention), and
        no previous plan, so that an episode's actions never depend on the one before (resume replays it)."""
        self.state = self.model.initial_state(1, device=self.device)
        self.prev_action = torch.zeros(1, self.action_dim, device=self.device)
        self.start: tuple[torch.Tensor, torch.Tensor] | None = None  # the warm start, when configured

    def act(self, obs_uint8: np.ndarray, explore: bool, generator: torch.Generator | None = None) -> np.ndarray:
        """Filter `obs_uint8` (64, 64, 3), plan, add N(0, expl_noise) if `explore`; return the action (A,) float32."""
        obs = np.asarray(obs_uint8)
        if obs.shape != (64, 64, 3) or obs.dtype != np.uint8:
            raise ValueError(f"obs_uint8 must be a (64, 64, 3) uint8 image, got {obs.shape} {obs.dtype}")
        with torch.inference_mode():
            pixels = torch.from_numpy(np.array(obs)).to(self.device).unsqueeze(0)  # (1, 64, 64, 3)
            with autocast_context(self.precision, self.device):
                embed = self.model.encode(preprocess_obs(pixels, self.config.bit_depth, generator))
                state = self.model.obs_step(self.state, self.prev_action, embed, generator)[0]
            state = state._replace(deter=state.deter.float(), stoch=state.stoch.float())
            if self.config.plan_warm_start:
                plan = self.planner.plan(self.model, state, generator, start=self.start)  # (H, 1, A)
                self.start = warm_start(plan, self.config.plan_warm_std)
                action = plan[0]
            else:
                action = self.planner(self.model, state, generator)  # (1, A)
            if explore and self.config.expl_noise > 0:
                gdev = generator.device if generator is not None else self.device
                noise = torch.randn(action.shape, generator=generator, device=gdev).to(self.device)
                action = action + self.config.expl_noise * noise
            action = action.clamp(ACTION_LOW, ACTION_HIGH)
            self.state, self.prev_action = state, action
            return action[0].cpu().numpy().astype(np.float32)


def run_episode(env: Any, agent: Agent, *, env_seed: int, generator: torch.Generator, explore: bool,
                max_steps: int | None = None, record_frames: bool = False, progress: bool = False,
                desc: str = "episode") -> dict[str, Any]:
    """One episode from `env.reset(seed=env_seed)`; per step the obs seen, action, reward, terminal flag."""
    obs, _ = env.reset(seed=env_seed)
    obs = np.array(obs, dtype=np.uint8)  # a copy: an env may reuse its frame buffer
    agent.reset()
    steps: dict[str, Any] = {"obs": [], "action": [], "reward": [], "terminal": []}
    frames = [obs] if record_frames else None
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=max_steps, desc=desc, unit="step", leave=False)
    try:
        while max_steps is None or len(steps["reward"]) < max_steps:
            check_stop()
            action = agent.act(obs, explore=explore, generator=generator)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            record_step(steps, obs, action, reward, terminated)
            if frames is not None:
                frames.append(np.array(next_obs, dtype=np.uint8))
            if bar is not None:
                bar.update(1)
            if terminated or truncated:
                break
            obs = np.array(next_obs, dtype=np.uint8)
    finally:
        if bar is not None:
            bar.close()
    steps["return"] = float(np.sum(steps["reward"]))
    if frames is not None:
        steps["frames"] = np.stack(frames).astype(np.uint8)  # (T+1, 64, 64, 3)
    return steps


class _ActingMode:
    """Model in eval mode while acting; its previous mode restored afterwards (even on error)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        self.model.train(self.was_training)


def collect_env_seed(config: Config, iteration: int, k: int) -> int:
    """The environment seed of iteration `iteration`'s k-th collected episode."""
    return derive_seed(config.seed, "collect", iteration, k, "env")


def collect_experience(env: Any, model: torch.nn.Module, planner: Any, storage: Any, num_episodes: int,
                       config: Config, *, iteration: int, device: torch.device | str | None = None,
                       progress: bool = True, first_episode: int = 0,
                       numbers: Sequence[int] | None = None) -> dict[str, list]:
    """Run `num_episodes` exploring episodes with the planner, store each; returns dict(returns, lengths, paths).

    Episode k (counted from `first_episode`: a resumed iteration that already stored some of its
    episodes passes how many) of `iteration` draws all its randomness from
    (config.seed, "collect", iteration, k). `numbers` are the episode numbers to store them under
    (default: the next free ones).
    """
    num_episodes = positive_int("num_episodes", num_episodes)
    for name, value in (("iteration", iteration), ("first_episode", first_episode)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if numbers is not None and len(numbers) != num_episodes:
        raise ValueError(f"numbers: one episode number per episode expected, got {len(numbers)} for {num_episodes}")
    agent = Agent(model, planner, config, device)
    out: dict[str, list] = {"returns": [], "lengths": [], "paths": []}
    with _ActingMode(model):
        for j, k in enumerate(range(int(first_episode), int(first_episode) + num_episodes)):
            keys = (config.seed, "collect", int(iteration), k)
            steps = run_episode(env, agent, env_seed=collect_env_seed(config, int(iteration), k),
                                generator=torch_generator(*keys, device=agent.device), explore=True,
                                max_steps=config.episode_len, progress=progress,
                                desc=f"collect it {iteration} ep {k}")
            path = storage.add_episode(steps["obs"], steps["action"], steps["reward"], steps["terminal"],
                                       index=None if numbers is None else int(numbers[j]))
            out["returns"].append(steps["return"])
            out["lengths"].append(len(steps["reward"]))
            out["paths"].append(path)
    return out


def evaluate(model: torch.nn.Module, planner: Any, config: Config, *, num_episodes: int, seed_key: int | str,
             env: Any = None, device: torch.device | str | None = None, record_frames: bool = False,
             progress: bool = False, explore: bool = False,
             on_episode: Callable[[int, float, int], None] | None = None) -> dict[str, Any]:
    """`num_episodes` episodes (noise-free unless `explore`), on env seeds from (config.seed, "eval", seed_key, k).

    Uses `env` when given, else makes (and closes) the config's environment. Returns dict(mean, std,
    returns, lengths, mean_abs_action) and, with `record_frames`, frames: one (T+1, 64, 64, 3) uint8 array
    per episode (the observations the agent saw, for a video). `explore` adds the training's exploration
    noise (a diagnostic: the training loop's evaluations are noise-free). `on_episode(k, return, length)`
    hears each episode as it ends.
    """
    num_episodes = positive_int("num_episodes", num_episodes)
    own_env = env is None
    if own_env:
        env = make_env_from_config(config)
    agent = Agent(model, planner, config, device)
    returns, lengths, frames, abs_actions = [], [], [], []
    try:
        with _ActingMode(model):
            for k in range(num_episodes):
                keys = (config.seed, "eval", seed_key, k)
                steps = run_episode(env, agent, env_seed=derive_seed(*keys, "env"),
                                    generator=torch_generator(*keys, device=agent.device), explore=explore,
                                    max_steps=config.episode_len, record_frames=record_frames,
                                    progress=progress, desc=f"evaluate ep {k}")
                returns.append(steps["return"])
                lengths.append(len(steps["reward"]))
                abs_actions.append(np.abs(np.asarray(steps["action"], dtype=np.float64)).mean())
                if on_episode is not None:
                    on_episode(k, returns[-1], lengths[-1])
                if record_frames:
                    frames.append(steps["frames"])
    finally:
        if own_env:
            env.close()
    # How hard the agent acts: a CEM mean of a still-wide elite set is shrunk toward zero (docs/results/benchmark).
    result: dict[str, Any] = {"mean": float(np.mean(returns)), "std": float(np.std(returns)),
                              "returns": returns, "lengths": lengths,
                              "mean_abs_action": float(np.mean(abs_actions))}
    if record_frames:
        result["frames"] = frames
    return result


def build_agent_parts(config: Config, device: torch.device | None = None
                      ) -> tuple[WorldModel, CEMPlanner, torch.device, str]:
    """A world model initialised from the config's seed, its planner, the device and precision."""
    device = device or select_device()
    precision = resolve_precision(config.precision, device)
    env = make_env_from_config(config)
    action_dim = int(np.prod(env.action_space.shape))
    env.close()
    # Initial weights from a derived seed, so a fresh run and its restart start identically.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        model = WorldModel(action_dim, config)
    model.to(device)
    planner = CEMPlanner.from_config(config, action_dim, precision=precision)
    return model, planner, device, precision
