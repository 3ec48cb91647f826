"""Gymnasium environments seen through 64×64×3 uint8 pixels, with action repeat and actions in [-1, 1].

Rendering is headless (SDL's dummy video driver, no window), so it runs on Colab and in CI.
"""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # before pygame is imported by any renderer
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
# SDL otherwise takes over SIGINT/SIGTERM once it renders: Colab's Stop button (SIGINT) would no
# longer raise KeyboardInterrupt, so the loop could not save its finished iterations.
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame's import banner is not ours to print

import warnings  # noqa: E402
from typing import Any, SupportsFloat  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from planet_colab.checks import positive_int  # noqa: E402
from planet_colab.config import Config  # noqa: E402
from planet_colab.dmc_install import install_hint, uses_mujoco  # noqa: E402
from planet_colab.seeding import derive_seed, numpy_rng  # noqa: E402
from planet_colab.stop_request import check_stop  # noqa: E402
from planet_colab.storage import EpisodeStorage  # noqa: E402

# pygame 2.6 imports pkg_resources, which setuptools >= 81 marks deprecated on every first render.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API", category=UserWarning,
                        module="pygame.pkgdata")

IMAGE_SIZE = 64
# Classic-control Pendulum draws at `screen_dim` (500) pixels; drawing at 256 and averaging 4×4
# blocks gives the same anti-aliased 64×64 picture in under half the time.
_RENDER_DIM = 4 * IMAGE_SIZE


def _resize(frame: np.ndarray) -> np.ndarray:
    """Area-average an (H, W, 3) uint8 frame to (64, 64, 3)."""
    h, w = frame.shape[:2]
    if (h, w) == (IMAGE_SIZE, IMAGE_SIZE):
        return np.ascontiguousarray(frame, dtype=np.uint8)
    return np.asarray(Image.fromarray(np.ascontiguousarray(frame[..., :3])).resize(
        (IMAGE_SIZE, IMAGE_SIZE), Image.BOX), dtype=np.uint8)


class PixelEnv(gym.Wrapper):
    """Pixels (64, 64, 3) uint8 for observations; actions in [-1, 1] repeated `action_repeat` times."""

    def __init__(self, env: gym.Env, action_repeat: int = 2, seed: int | None = None) -> None:
        super().__init__(env)
        if not isinstance(env.action_space, gym.spaces.Box):
            raise ValueError(f"{env.spec.id if env.spec else env}: only continuous (Box) action spaces "
                             f"are supported, got {env.action_space}")
        low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"action space {env.action_space} is unbounded; cannot map [-1, 1] onto it")
        self.action_repeat = action_repeat
        self._low, self._high = low, high
        self._env_dtype = env.action_space.dtype
        self.action_space = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32, seed=seed)
        self.observation_space = gym.spaces.Box(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        self._first_seed = seed

    def scale_action(self, action: np.ndarray) -> np.ndarray:
        """Map an action in [-1, 1] (clipped) onto the wrapped environment's range."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return (self._low + (action + 1.0) * 0.5 * (self._high - self._low)).astype(self._env_dtype)

    def render_pixels(self) -> np.ndarray:
        """The current frame as (64, 64, 3) uint8."""
        frame = self.env.render()
        if frame is None:
            raise ValueError("the environment rendered nothing; it must be made with render_mode='rgb_array'")
        return _resize(frame)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset (the first reset uses make_env's seed unless another is given) and return pixels."""
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        _, info = self.env.reset(seed=seed, options=options)
        return self.render_pixels(), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Repeat the scaled action, sum rewards, stop early at the end; return pixels of the last state."""
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action: expected shape {self.action_space.shape}, got {action.shape}")
        env_action = self.scale_action(action)
        total, terminated, truncated, info = 0.0, False, False, {}
        for _ in range(self.action_repeat):
            _, reward, terminated, truncated, info = self.env.step(env_action)
            total += float(reward)
            if terminated or truncated:
                break
        return self.render_pixels(), total, bool(terminated), bool(truncated), info


class _OwnGLContext(gym.Wrapper):
    """A gymnasium MuJoCo env that makes its own OpenGL context current before drawing each frame.

    Gymnasium's offscreen viewer makes its context current only when it creates it. The training loop
    keeps one env while every evaluation makes and closes another, so after the first evaluation the
    loop drew into the closed env's context: all-black frames (HalfCheetah under OSMesa, every episode
    collected after an evaluation), and under EGL a draw with no context at all.
    """

    def render(self) -> Any:
        """The wrapped env's frame, drawn in its own context."""
        viewer = getattr(getattr(self.env.unwrapped, "mujoco_renderer", None), "viewer", None)
        if viewer is not None and hasattr(viewer, "make_context_current"):
            viewer.make_context_current()
        return self.env.render()


def make_env(name: str = "Pendulum-v1", action_repeat: int = 2, seed: int | None = None,
             max_episode_steps: int | None = None) -> PixelEnv:
    """A gymnasium env with 64×64×3 uint8 pixel observations, actions in [-1, 1] and action repeat.

    `name` is a gymnasium id, or "dmc:<domain>-<task>" for a DeepMind Control Suite task.
    `max_episode_steps` counts environment steps (before action repeat); None keeps the env's own
    limit. Reaching it sets `truncated`, never `terminated`.
    """
    positive_int("action_repeat", action_repeat)
    if max_episode_steps is not None:
        positive_int("max_episode_steps (or None)", max_episode_steps)
    if name.startswith("dmc:"):
        from planet_colab.dmc import make_dmc_env

        return PixelEnv(make_dmc_env(name, max_episode_steps, IMAGE_SIZE), action_repeat=action_repeat,
                        seed=seed)
    kwargs: dict[str, Any] = {}
    if uses_mujoco(name):
        from planet_colab.rendering import choose_gl_backend

        choose_gl_backend()  # before gymnasium imports mujoco
        # Drawn at 64×64, never resized, by camera 0 (HalfCheetah's "track" camera follows the body,
        # like the suite's camera 0; gymnasium's own default is a free camera it may run away from).
        # The suite's render settings too (rendering.configure_offscreen): HalfCheetah's own 4096² shadow
        # map cost 81 ms CPU per frame against 21 ms at 512², which changes 0.79% of its pixels by more
        # than 8 of 255, on the legs' shadow edges (`python -m planet_colab.bench env --preset
        # half_cheetah --threads 1`, OSMesa, AVX2 CPU).
        kwargs = {"width": IMAGE_SIZE, "height": IMAGE_SIZE, "camera_id": 0}
    try:
        if kwargs:
            from planet_colab.dmc import route_mujoco_warnings

            route_mujoco_warnings()  # imports mujoco: a missing one or a GL failure is reported below
        env = gym.make(name, render_mode="rgb_array", max_episode_steps=max_episode_steps, **kwargs)
    except (gym.error.DependencyNotInstalled, ImportError) as e:
        if not kwargs:  # another env's missing package (Box2D, …): gymnasium's own advice, on one line
            raise ValueError(f"env_name {name!r} cannot be made: {' '.join(str(e).split())}") from None
        raise ValueError(f"env_name {name!r} needs MuJoCo ({str(e).splitlines()[0]}); install it with "
                         f"{install_hint()}") from None
    except gym.error.Error as e:
        raise ValueError(f"env_name {name!r} cannot be made: {e}") from None
    except Exception as e:  # noqa: BLE001 - importing mujoco loads the GL library MUJOCO_GL names
        from planet_colab.rendering import gl_error_message, is_gl_failure

        if kwargs and is_gl_failure(e):
            raise ValueError(gl_error_message(e)) from None
        raise
    inner = env.unwrapped
    if isinstance(getattr(inner, "screen_dim", None), int) and inner.screen_dim > _RENDER_DIM:
        inner.screen_dim = _RENDER_DIM
    if kwargs:  # a MuJoCo env
        from planet_colab.rendering import configure_offscreen

        configure_offscreen(inner.model, IMAGE_SIZE)  # before its first render makes the GL context
        env = _OwnGLContext(env)
    return PixelEnv(env, action_repeat=action_repeat, seed=seed)


def make_env_from_config(config: Config, seed: int | None = None) -> PixelEnv:
    """make_env with the config's env_name, action_repeat and max_episode_steps."""
    return make_env(config.env_name, config.action_repeat, seed=seed,
                    max_episode_steps=config.max_episode_steps)


def action_size(config: Config) -> int:
    """The number of action dimensions of `config`'s environment (built once, then closed)."""
    env = make_env_from_config(config, seed=0)
    try:
        return int(np.prod(env.action_space.shape))
    finally:
        env.close()


def physical_state(env: gym.Env) -> dict[str, np.ndarray]:
    """The task's low-dimensional state now, by name: a suite task's observations, else the env's state vector."""
    inner = env.unwrapped
    if hasattr(inner, "task_state"):
        return inner.task_state()
    if hasattr(inner, "_get_obs"):  # gymnasium's MuJoCo and Pendulum: the vector a state-based agent sees
        return {"obs": np.asarray(inner._get_obs(), np.float64).ravel()}
    if getattr(inner, "state", None) is not None:
        return {"state": np.asarray(inner.state, np.float64).ravel()}
    raise ValueError(f"{env.spec.id if env.spec else inner}: no low-dimensional state to read")


def record_step(steps: dict[str, list], obs: Any, action: Any, reward: SupportsFloat, terminated: bool) -> None:
    """Append a step as an episode stores it: the obs seen, the action taken, its reward, whether it ended there."""
    steps["obs"].append(obs)
    steps["action"].append(action)
    steps["reward"].append(float(reward))
    steps["terminal"].append(bool(terminated))


def run_random_episode(env: PixelEnv, rng: np.random.Generator, env_seed: int | None = None
                       ) -> dict[str, list]:
    """One episode with uniform random actions in [-1, 1]: per step obs seen, action, reward, terminal."""
    obs, _ = env.reset(seed=env_seed)
    steps: dict[str, list] = {"obs": [], "action": [], "reward": [], "terminal": []}
    while True:
        action = rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        record_step(steps, obs, action, reward, terminated)
        if terminated or truncated:
            return steps
        obs = next_obs


def seed_episode_env_seed(seed: int, k: int) -> int:
    """The environment seed of random seed episode k of a run seeded `seed`."""
    return derive_seed(seed, "seed_episode", k, "env")


def collect_seed_episodes(config: Config, storage: EpisodeStorage, seed: int | None = None,
                          *, progress: bool = True) -> int:
    """Store random-policy episodes 1..config.seed_episodes that are missing; return how many were collected.

    Episode k's env seed and actions derive from (seed or config.seed, "seed_episode", k), so a
    restart re-creates exactly the episode it lost and skips the ones already stored.
    """
    base = config.seed if seed is None else seed
    missing = [k for k in range(1, config.seed_episodes + 1) if not storage.has_episode(k)]
    if not missing:
        return 0
    env = make_env_from_config(config)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(missing), desc="seed episodes", unit="ep")
    try:
        for k in missing:
            check_stop()
            steps = run_random_episode(env, numpy_rng(base, "seed_episode", k, "actions"),
                                       env_seed=seed_episode_env_seed(base, k))
            storage.add_episode(steps["obs"], steps["action"], steps["reward"], steps["terminal"], index=k)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(ret=f"{sum(steps['reward']):.1f}", len=len(steps["reward"]))
    finally:
        env.close()
        if bar is not None:
            bar.close()
    return len(missing)

