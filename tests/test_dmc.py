"""DeepMind Control Suite and MuJoCo tasks: headless 64×64 frames, one-line errors, exact resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from run_checks import subprocess_env
from skip_reasons import DMC_EXTRA

from planet_colab.config import PRESETS, get_config
from planet_colab.env import make_env
from planet_colab.storage import EpisodeStorage

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).with_name("fault_launcher.py")

try:
    import dm_control  # noqa: F401
    HAVE_DMC = True
except ImportError:
    HAVE_DMC = False
needs_dmc = pytest.mark.skipif(not HAVE_DMC, reason=DMC_EXTRA)

# A DMC task at smoke sizes: 40 env steps / action repeat 4 = 10 agent steps per episode.
DMC_SMOKE = ["env_name=dmc:cartpole-swingup", "action_repeat=4", "max_episode_steps=40"]


@needs_dmc
def test_dmc_task_renders_64x64_uint8_frames_headless():
    env = make_env("dmc:cartpole-swingup", action_repeat=8, seed=0, max_episode_steps=1000)
    obs, _ = env.reset()
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert obs.std() > 5, "the frame is blank"
    assert env.action_space.low[0] == -1 and env.action_space.high[0] == 1
    steps, rewards = 0, []
    while True:
        obs, reward, terminated, truncated, _ = env.step(np.ones(1, np.float32))
        steps += 1
        rewards.append(reward)
        if terminated or truncated:
            break
    env.close()
    assert steps == 125 and truncated and not terminated  # 1000 env steps / repeat 8; a time limit
    assert all(0 <= r <= 8 for r in rewards)  # per-step rewards in [0, 1], summed over the repeat


@needs_dmc
def test_dmc_reset_with_a_seed_repeats_the_episode():
    env = make_env("dmc:cartpole-swingup", action_repeat=2, max_episode_steps=20)
    first = [env.reset(seed=7)[0]] + [env.step(np.full(1, 0.5, np.float32))[0] for _ in range(3)]
    again = [env.reset(seed=7)[0]] + [env.step(np.full(1, 0.5, np.float32))[0] for _ in range(3)]
    other = env.reset(seed=8)[0]
    env.close()
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other)


@needs_dmc
def test_a_suite_tasks_physical_state_is_its_own_observation_of_the_frame_drawn():
    """bench probe's labels: cup_catch's position is (cup x, cup z, ball x, ball z), and it moves with the frame."""
    from planet_colab.env import physical_state

    env = make_env("dmc:ball_in_cup-catch", action_repeat=4, max_episode_steps=40)
    env.reset(seed=3)
    first = physical_state(env)
    np.testing.assert_array_equal(first["position"], env.unwrapped._env.physics.data.qpos)
    env.step(np.ones(2, np.float32))
    later = physical_state(env)
    env.close()
    assert {key: value.shape for key, value in first.items()} == {"position": (4,), "velocity": (4,)}
    assert not np.array_equal(first["position"], later["position"])  # the state of this step, not a stale one


@needs_dmc
def test_half_cheetah_renders_64x64_uint8_frames_headless():
    pytest.importorskip("mujoco", reason=DMC_EXTRA)
    from planet_colab.rendering import SHADOW_MAP_SIZE

    env = make_env("HalfCheetah-v5", action_repeat=2, seed=0, max_episode_steps=10)
    # The suite's cheaper offscreen settings (a 512² shadow map, not the model's 4096²: 4× cheaper frames).
    assert env.unwrapped.model.vis.quality.shadowsize == SHADOW_MAP_SIZE
    obs, _ = env.reset()
    obs, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
    env.close()
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert obs.std() > 5, "the frame is blank"


@needs_dmc
@pytest.mark.parametrize("env_name", ["HalfCheetah-v5", "dmc:cartpole-swingup"])
def test_an_env_draws_its_own_frames_after_another_one_was_closed(env_name):
    # The training loop keeps its env while each evaluation makes and closes its own, in one process.
    pytest.importorskip("mujoco", reason=DMC_EXTRA)
    loop = make_env(env_name, action_repeat=1, seed=0, max_episode_steps=10)
    first, _ = loop.reset(seed=3)
    other = make_env(env_name, action_repeat=1, seed=0, max_episode_steps=10)
    other.reset(seed=4)
    other.close()
    again, _ = loop.reset(seed=3)
    loop.close()
    assert first.std() > 5
    np.testing.assert_array_equal(again, first)  # not drawn into the closed env's context (black)


@needs_dmc
def test_settotalmass_deprecation_is_not_repeated_at_every_env_but_other_mujoco_warnings_are_logged(
        tmp_path, monkeypatch, capfd, caplog):
    pytest.importorskip("mujoco", reason=DMC_EXTRA)
    import mujoco

    monkeypatch.chdir(tmp_path)  # where MuJoCo's own handler appends MUJOCO_LOG.TXT
    for name in ("dmc:cheetah-run", "HalfCheetah-v5"):  # both models set settotalmass
        make_env(name, action_repeat=1, max_episode_steps=2).close()
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err + caplog.text and not (tmp_path / "MUJOCO_LOG.TXT").exists()
    mujoco.get_mju_user_warning()("a warning of another kind")
    assert "a warning of another kind" in caplog.text


def test_every_paper_task_has_a_preset_with_1000_env_steps():
    repeats = {"cartpole_swingup": 8, "reacher_easy": 4, "cheetah_run": 4, "finger_spin": 2,
               "cup_catch": 4, "walker_walk": 2}
    for name, repeat in repeats.items():
        config = get_config(name)
        assert config.env_name.startswith("dmc:") and config.action_repeat == repeat, name
        assert config.max_episode_steps == 1000, name
    assert get_config("half_cheetah").env_name == "HalfCheetah-v5"
    assert get_config("half_cheetah").max_episode_steps == 1000
    assert set(repeats) | {"half_cheetah"} <= set(PRESETS)


def test_missing_dm_control_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_control", None)  # `import dm_control` now raises ImportError
    monkeypatch.setitem(sys.modules, "dm_control.suite", None)
    with pytest.raises(ValueError) as err:
        make_env("dmc:cartpole-swingup", action_repeat=8)
    message = str(err.value)
    assert "\n" not in message and 'pip install -e ".[dmc]"' in message


@needs_dmc
def test_unknown_task_lists_the_known_ones():
    for name in ("dmc:cartpole-swingdown", "dmc:cartpole"):
        with pytest.raises(ValueError) as err:
            make_env(name)
        message = str(err.value)
        assert "\n" not in message and "dmc:cartpole-swingup" in message and "dmc:walker-walk" in message


def test_unknown_task_on_the_command_line_is_one_line(tmp_path):
    cmd = [sys.executable, "-m", "planet_colab", "train", "--preset", "smoke", "--run-dir",
           str(tmp_path / "run"), "--no-progress", "--set", "env_name=dmc:nope-nothing"]
    out = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "dmc:cartpole-swingup" in lines[0] or 'pip install -e ".[dmc]"' in lines[0]


# Make every attempt to load a GL library fail, as on a machine without libEGL / libOSMesa: PyOpenGL
# (which dm_control and mujoco render through) loads them with ctypes.CDLL.
_NO_GL = """
import ctypes, os
real_init = ctypes.CDLL.__init__
def init(self, name, *args, **kwargs):
    if name and os.path.basename(str(name)).startswith(("libEGL", "libOSMesa", "libGL")):
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")
    real_init(self, name, *args, **kwargs)
ctypes.CDLL.__init__ = init
from planet_colab.env import make_env
env = make_env(ENV_NAME, action_repeat=2)
env.reset(seed=0)
"""


@needs_dmc
@pytest.mark.parametrize("backend, env_name", [("egl", "dmc:cartpole-swingup"), ("osmesa", "dmc:cartpole-swingup"),
                                               ("egl", "HalfCheetah-v5")])
def test_missing_gl_library_names_the_fix(backend, env_name):
    env = subprocess_env(MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    code = f"ENV_NAME = {env_name!r}\n{_NO_GL}\nprint('rendered')"
    wrapper = f"import sys\ntry:\n    exec({code!r})\nexcept ValueError as e:\n    sys.exit(f'error: {{e}}')\n"
    out = subprocess.run([sys.executable, "-c", wrapper], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "apt-get install" in lines[0] and "libegl1" in lines[0] and "libosmesa6" in lines[0]


def _train(run_dir: Path, fault: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    args = ["train", "--preset", "smoke", "--iterations", "2", "--no-progress", "--run-dir", str(run_dir),
            "--set", *DMC_SMOKE, "checkpoint_every=1", "eval_every=2", "eval_episodes=1"]
    cmd = [sys.executable, "-m", "planet_colab", *args] if fault is None else \
        [sys.executable, str(LAUNCHER), fault[0], str(fault[1]), "--", *args]
    return subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)


@needs_dmc
def test_dmc_run_killed_and_resumed_matches_an_uninterrupted_one(tmp_path):
    reference = _train(tmp_path / "reference")
    assert reference.returncode == 0, reference.stdout + reference.stderr
    run_dir = tmp_path / "killed"
    kills = 0
    for fault in [("episode", 2), ("train_step", 2), ("checkpoint", 1), ("episode", 1)]:
        proc = _train(run_dir, fault)
        assert proc.returncode in (0, -9), proc.stdout + proc.stderr
        kills += proc.returncode == -9
    assert kills >= 3, f"only {kills} planted kills landed"
    final = _train(run_dir)
    assert final.returncode == 0, final.stdout + final.stderr

    mine, theirs = EpisodeStorage(run_dir / "episodes"), EpisodeStorage(tmp_path / "reference" / "episodes")
    assert mine.num_episodes == theirs.num_episodes == 4  # 2 seed + 1 per iteration
    for a_path, b_path in zip(mine.episode_paths, theirs.episode_paths, strict=True):
        a, b = mine.load_episode(a_path), theirs.load_episode(b_path)
        assert len(a["reward"]) == 10
        for key in ("obs", "action", "reward", "terminal"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{a_path.name}:{key}")
    name = "checkpoints/ckpt_000001.pt"
    w = torch.load(run_dir / name, weights_only=True, map_location="cpu")["model"]
    ref = torch.load(tmp_path / "reference" / name, weights_only=True, map_location="cpu")["model"]
    assert w.keys() == ref.keys() and all(torch.equal(w[k], ref[k]) for k in ref)


@needs_dmc
@pytest.mark.parametrize("task", [DMC_SMOKE, ["env_name=HalfCheetah-v5", "action_repeat=1", "max_episode_steps=40"]])
def test_env_bench_reports_the_environment_share_of_an_episode(task):
    if task[0].endswith("HalfCheetah-v5"):
        pytest.importorskip("mujoco", reason=DMC_EXTRA)
    cmd = [sys.executable, "-m", "planet_colab.bench", "env", "--preset", "smoke", "--steps", "12", "--plans", "1",
           "--set", *task]
    out = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "env_name=" + result["env_name"] == task[0] and result["steps"] == 12
    for key in ("physics_ms", "render_ms", "default_render_ms", "planner_ms_per_action"):
        assert result[key] > 0, key
    total = result["env_ms_per_agent_step"] + result["planner_ms_per_action"]
    assert result["env_share"] == pytest.approx(result["env_ms_per_agent_step"] / total, rel=1e-3)
    # The cheaper render settings keep frames faithful: shadow edges at most.
    assert result["pixels_differing_over_8"] < 0.01


@pytest.mark.parametrize("version", [(3, 10), (3, 12), (3, 13)])
def test_pyproject_dmc_extra_installs_what_dmc_install_lists(version):
    tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with tomllib (Python 3.11+)")
    requirements = pytest.importorskip("packaging.requirements", reason="needs packaging (pip install packaging)")
    from planet_colab.dmc_install import DM_CONTROL, pip_install_commands

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dmc"]
    env = {"python_version": f"{version[0]}.{version[1]}", "python_full_version": f"{version[0]}.{version[1]}.0"}
    extra = {str(r.name) + str(r.specifier) for r in map(requirements.Requirement, declared)
             if r.marker is None or r.marker.evaluate(env)}
    commands = pip_install_commands(version)
    listed = {a for args in commands for a in args if not a.startswith("-")}
    if version >= (3, 13):
        # labmaze has no wheel there: dm_control comes on its own, without its requirements.
        assert commands[-1] == ["--no-deps", DM_CONTROL] and DM_CONTROL not in extra
        listed.discard(DM_CONTROL)
    assert extra == listed
    assert "mujoco==3.17.0" in extra  # dm_control 1.0.50 fails on mujoco 4


def test_gl_backend_is_chosen_once_and_never_overrides_the_user(monkeypatch, tmp_path):
    from planet_colab import rendering

    vendor = tmp_path / "egl_vendor.d" / "10_nvidia.json"
    monkeypatch.setattr(rendering, "NVIDIA_EGL_VENDOR_FILE", vendor)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    monkeypatch.setenv("MUJOCO_GL", "glfw")
    assert rendering.choose_gl_backend() == "glfw"  # the user's choice stands
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setattr(rendering, "nvidia_gpu_present", lambda: True)
    assert rendering.choose_gl_backend() == "egl" and os.environ["MUJOCO_GL"] == "egl"
    assert json.loads(vendor.read_text())["ICD"]["library_path"] == "libEGL_nvidia.so.0"  # Colab lacks it
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setattr(rendering, "nvidia_gpu_present", lambda: False)
    monkeypatch.setattr(rendering.ctypes.util, "find_library", lambda name: "libOSMesa.so.8")
    assert rendering.choose_gl_backend() == "osmesa"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setattr(rendering.ctypes.util, "find_library", lambda name: None)
    assert rendering.choose_gl_backend() == "egl"  # mesa's EGL renders on the CPU


def test_dm_controls_own_deprecation_warnings_are_hidden_and_no_others():
    import warnings

    from planet_colab import dmc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dmc._quiet_dm_control_deprecations()
        # numpy 2.5's warning as dm_control 1.0.50 raises it, then one from anywhere else.
        warnings.warn_explicit("Setting the shape on a NumPy array has been deprecated", DeprecationWarning,
                               "engine.py", 1, module="dm_control.mujoco.engine")
        warnings.warn_explicit("something else is deprecated", DeprecationWarning, "env.py", 1,
                               module="planet_colab.env")
    assert [str(w.message) for w in caught] == ["something else is deprecated"]
