"""Which tasks need the `dmc` extra, what it installs on each Python, and the hint a missing install prints.

dm_control 1.0.50 requires labmaze, which has no wheel for Python >= 3.13 (Colab's Python) and
whose source build needs bazel; only dm_control.locomotion imports it, never the suite. So from
3.13 on, the extra lists dm_control's other requirements and dm_control itself is installed with
`pip install --no-deps`. pyproject.toml's `dmc` extra holds the same lists (a test checks).
"""

from __future__ import annotations

import sys

# Kept at 1.0.50 / 3.17.0, the newest pair that installs on every Python we support (3.10-3.13), as tried
# on 2026-12-05: dm_control 1.0.52 with mujoco 4.0.1 passes tests/test_dmc.py, test_env.py and
# test_presets.py on Python 3.11 (OSMesa), but mujoco 4.x publishes no wheel for Python 3.10. 1.0.50 sets
# ndarray.shape, deprecated in numpy 2.5: dmc.py hides those warnings until the pin can move.
DM_CONTROL = "dm_control==1.0.50"
# dm_control 1.0.50 declares mujoco>=3.17 but fails on mujoco 4.0.0 ('MjModel' object has no
# attribute 'flex_vertedge'); 3.17.0 is the release it was built against.
MUJOCO = "mujoco==3.17.0"
# dm_control 1.0.50's requirements without labmaze (and without its optional h5py).
DM_CONTROL_DEPS = ("absl-py>=0.7.0", "dm-env", "dm-tree!=0.1.2", "glfw", "lxml", "protobuf>=3.19.4",
                   "pyopengl>=3.1.4", "pyparsing>=3.0.0", "requests", "scipy", "tqdm")
# What gymnasium[mujoco] adds for its MuJoCo envs besides mujoco (whose pin is ours).
GYMNASIUM_MUJOCO_DEPS = ("imageio>=2.14.1", "packaging>=23.0")
NO_LABMAZE_WHEEL = (3, 13)


def uses_mujoco(env_name: str) -> bool:
    """True for a DeepMind Control Suite task ("dmc:…") or a gymnasium MuJoCo env (the `dmc` extra)."""
    if env_name.startswith("dmc:"):
        return True
    try:
        import gymnasium as gym

        entry = gym.spec(env_name).entry_point
    except Exception:  # an unknown id is reported where the env is made, with its own message
        return False
    return isinstance(entry, str) and ".mujoco" in entry


def pip_install_commands(version: tuple[int, int] | None = None) -> list[list[str]]:
    """The `pip install` argument lists that install the dmc extra's packages on this Python."""
    version = tuple(sys.version_info[:2]) if version is None else version
    if version < NO_LABMAZE_WHEEL:
        return [[DM_CONTROL, MUJOCO, *GYMNASIUM_MUJOCO_DEPS]]
    return [[MUJOCO, *DM_CONTROL_DEPS, *GYMNASIUM_MUJOCO_DEPS], ["--no-deps", DM_CONTROL]]


def install_hint(version: tuple[int, int] | None = None) -> str:
    """One line naming the commands that install the dmc extra here and in Colab."""
    version = tuple(sys.version_info[:2]) if version is None else version
    # Quoted: zsh (macOS's shell) reads unquoted brackets as a pattern. This module then takes the
    # extra's last step on each Python (dm_control without labmaze on 3.13).
    local = 'pip install -e ".[dmc]" && python -m planet_colab.dmc_install'
    colab = "!" + " && ".join("pip install -q " + " ".join(a if a.startswith("-") else f"'{a}'" for a in args)
                              for args in pip_install_commands(version))
    return f"`{local}` (Colab: `{colab}`)"


def main() -> None:
    """`python -m planet_colab.dmc_install`: pip-install the dmc extra's packages for this Python."""
    import subprocess

    for args in pip_install_commands():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args], check=True)


if __name__ == "__main__":
    main()
