"""DeepMind Control Suite tasks as gymnasium envs that render 64×64 frames from camera 0.

`env_name` "dmc:<domain>-<task>" (e.g. "dmc:cartpole-swingup", "dmc:ball_in_cup-catch") reaches
`make_dmc_env`; env.PixelEnv then adds action repeat and [-1, 1] actions as for any gymnasium env.
dm_control is the optional `dmc` extra, imported only here and only when such a task is made.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from planet_colab.dmc_install import install_hint
from planet_colab.rendering import choose_gl_backend, configure_offscreen, gl_error_message, is_gl_failure

PREFIX = "dmc:"
# The PlaNet paper's six tasks (google-research/planet, planet/scripts/tasks.py).
PAPER_TASKS = ("cartpole-swingup", "reacher-easy", "cheetah-run", "finger-spin", "ball_in_cup-catch",
               "walker-walk")


# MuJoCo 3.17 (pinned: see dmc_install) deprecates the compiler attribute `settotalmass`, which
# dm_control's cheetah.xml and gymnasium's half_cheetah.xml both set. It still applies, but MuJoCo says
# so at every compile, about five times per `train` command and in red in the notebooks, and without a
# handler also appends it to MUJOCO_LOG.TXT in the working directory. Only that message is dropped.
_DROPPED_MUJOCO_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)


def _mujoco_warning(message: str) -> None:
    if not message.startswith(_DROPPED_MUJOCO_WARNINGS):
        logging.getLogger("mujoco").warning(message)


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings to the "mujoco" logger, less the known deprecation above.

    Call before a model is compiled and after dm_control is imported (which installs its own handler).
    Imports mujoco: call choose_gl_backend() first.
    """
    import mujoco

    mujoco.set_mju_user_warning(_mujoco_warning)


def _quiet_dm_control_deprecations() -> None:
    """Hide the numpy DeprecationWarnings raised inside dm_control's own code (not the user's to act on)."""
    # dm_control 1.0.50 sets ndarray.shape, deprecated in numpy 2.5: about a thousand identical warnings
    # per test session and per notebook. Raised from dm_control's modules only, so nothing else is hidden.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"dm_control(\.|$)")


def _import_suite() -> Any:
    choose_gl_backend()  # MuJoCo reads MUJOCO_GL when first imported
    _quiet_dm_control_deprecations()
    try:
        from dm_control import suite
    except ImportError as e:
        raise ValueError(f"dm_control tasks need the dmc extra ({e}); install it with {install_hint()}") from None
    except Exception as e:  # noqa: BLE001 - a GL library that fails to load raises all sorts of errors
        if is_gl_failure(e):
            raise ValueError(gl_error_message(e)) from None
        raise
    route_mujoco_warnings()
    return suite


def parse_task(name: str) -> tuple[str, str]:
    """Split "dmc:domain-task" into (domain, task), or raise ValueError listing the known tasks."""
    body = name[len(PREFIX):] if name.startswith(PREFIX) else name
    domain, sep, task = body.partition("-")
    if not sep or not domain or not task:
        raise ValueError(f"env_name {name!r} is not of the form 'dmc:<domain>-<task>'; "
                         f"known: {', '.join(PREFIX + t for t in PAPER_TASKS)}")
    return domain, task


class DMCEnv(gym.Env):
    """One dm_control task: `step` advances physics only; `render` draws camera 0 at 64×64."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, domain: str, task: str, image_size: int = 64) -> None:
        suite = _import_suite()
        if (domain, task) not in suite.ALL_TASKS:
            raise ValueError(f"unknown dm_control task {domain}-{task}; known: "
                             f"{', '.join(PREFIX + t for t in PAPER_TASKS)} "
                             "(or any other domain-task of dm_control.suite.ALL_TASKS)")
        self._env = suite.load(domain, task)
        configure_offscreen(self._env.physics.model, image_size)
        self._camera = None  # one camera for the env's life: physics.render builds a scene per frame
        self.render_mode = "rgb_array"
        self._size = image_size
        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32),
                                           spec.shape, np.float32)
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self._time_step = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; a seed reseeds the task's random state (initial pose, noise)."""
        super().reset(seed=seed)
        if seed is not None:
            # The only RNG a suite task draws from; RandomState takes 32-bit words, our seeds are 64-bit.
            words = np.random.SeedSequence(seed).generate_state(4)
            self._env.task._random = np.random.RandomState(words)
        self._time_step = self._env.reset()
        return np.zeros(0, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One control step; the suite's time limit is a truncation (discount 1), never a terminal."""
        ts = self._time_step = self._env.step(action)
        terminated = bool(ts.last() and ts.discount == 0.0)
        truncated = bool(ts.last() and not terminated)
        return np.zeros(0, np.float32), float(ts.reward or 0.0), terminated, truncated, {}

    def task_state(self) -> dict[str, np.ndarray]:
        """The suite's own low-dimensional observation of the current step (positions, velocities, …), by name."""
        if self._time_step is None:
            raise ValueError("the task has no state before its first reset")
        return {key: np.asarray(value, np.float64).ravel() for key, value in self._time_step.observation.items()}

    def render(self) -> np.ndarray:
        """Camera 0 drawn directly at image_size × image_size (uint8 RGB)."""
        try:
            if self._camera is None:
                from dm_control.mujoco.engine import Camera

                self._camera = Camera(self._env.physics, height=self._size, width=self._size, camera_id=0)
            return self._camera.render().copy()  # the camera reuses its buffer
        except Exception as e:  # noqa: BLE001 - GL context creation fails with backend-specific errors
            if is_gl_failure(e):
                raise ValueError(gl_error_message(e)) from None
            raise

    def close(self) -> None:
        """Free the physics and its GL context."""
        self._camera = None
        physics = getattr(self._env, "physics", None)
        if physics is not None and hasattr(physics, "free"):
            physics.free()


def make_dmc_env(name: str, max_episode_steps: int | None = None, image_size: int = 64) -> gym.Env:
    """The dm_control task `name` ("dmc:domain-task"), cut at max_episode_steps env steps (truncation)."""
    domain, task = parse_task(name)
    env: gym.Env = DMCEnv(domain, task, image_size)
    if max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps)
    return env
