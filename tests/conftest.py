"""Test-wide setup: headless rendering, Agg plots, and a throwaway run root for the notebooks."""

import os
import tempfile
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")
# Tiny models gain nothing from a second thread, and two OpenMP pools sharing 2 cores (a notebook
# kernel or subprocess next to this process) stall every parallel op.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    """Point notebooks (run under nbval in child kernels) at a temporary run root and this checkout."""
    # Child kernels and subprocesses must import this checkout, installed or not.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    if "PLANET_COLAB_RUN_ROOT" not in os.environ:
        os.environ["PLANET_COLAB_RUN_ROOT"] = tempfile.mkdtemp(prefix="planet_colab_nb_")


@pytest.fixture(autouse=True)
def one_thread():
    """Every test single-threaded, whatever imported torch first (see OMP_NUM_THREADS above)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_io_backoff(monkeypatch):
    """Transient-error retries (Drive drops) run without their real pauses; tests that count them patch again."""
    from planet_colab import safeio

    monkeypatch.setattr(safeio, "_sleep", lambda seconds: None)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A smoke-sized run: real seed episodes on disk and an (untrained) world model."""
    import torch

    from planet_colab.config import get_config
    from planet_colab.env import collect_seed_episodes
    from planet_colab.models import WorldModel
    from planet_colab.storage import EpisodeStorage

    config = get_config("smoke")
    storage = EpisodeStorage(tmp_path_factory.mktemp("run") / "episodes")
    collect_seed_episodes(config, storage, progress=False)
    episode = storage.load_episode(storage.episode_paths[0])
    torch.manual_seed(0)
    model = WorldModel(episode["action"].shape[1], config)
    return config, storage, episode, model
