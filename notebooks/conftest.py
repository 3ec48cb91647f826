"""nbval runs these notebooks on the smoke preset in a throwaway run root, whichever pytest command starts them."""

import os
import tempfile
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])


def pytest_configure(config):
    """Point the notebook kernels at this checkout, the smoke task and a temporary run root."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models; two OpenMP pools on 2 cores stall
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    if "PLANET_COLAB_RUN_ROOT" not in os.environ:
        os.environ["PLANET_COLAB_RUN_ROOT"] = tempfile.mkdtemp(prefix="planet_colab_nb_")
    # Whatever the task picker in notebook 01 says, the kernels run the seconds-per-iteration preset.
    os.environ["PLANET_COLAB_PRESET"] = "smoke"
