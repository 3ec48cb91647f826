"""Test-wide setup: headless rendering, Agg plots, and a throwaway run root for the notebooks."""

import os
import tempfile

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config):
    """Point notebooks (run under nbval in child kernels) at a temporary run root."""
    if "PLANET_COLAB_RUN_ROOT" not in os.environ:
        os.environ["PLANET_COLAB_RUN_ROOT"] = tempfile.mkdtemp(prefix="planet_colab_nb_")
