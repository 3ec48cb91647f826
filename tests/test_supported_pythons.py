"""The Python versions the README states are the ones pyproject.toml accepts and CI tests."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLAB_PYTHON = "3.13"


def _oldest_python() -> str:
    found = re.search(r'^requires-python\s*=\s*">=(3\.\d+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert found, 'pyproject.toml needs requires-python = ">=3.N"'
    return found.group(1)


def test_ci_tests_the_oldest_supported_python_and_colabs():
    workflow = (ROOT / ".github" / "workflows" / "tests.yml").read_text()
    matrix = re.search(r"python-version:\s*\[([^\]]*)\]", workflow)
    assert matrix, "tests.yml needs a python-version matrix"
    versions = [v.strip().strip("\"'") for v in matrix.group(1).split(",")]
    assert versions == [_oldest_python(), COLAB_PYTHON]
    assert "${{ matrix.python-version }}" in workflow


def test_readme_states_the_supported_pythons_and_the_cpu_wheel_command():
    readme = (ROOT / "README.md").read_text()
    assert f"Python {_oldest_python()} to {COLAB_PYTHON}" in readme
    assert ("pip install torch --index-url https://download.pytorch.org/whl/cpu && "
            "pip install -r requirements.txt") in readme
