"""The committed notebooks are clean: no outputs, Colab-first install cell, a badge, no logic.

Strip them before committing with `python tests/test_notebooks_clean.py` (rewrites notebooks/*.ipynb
in place). Why stripping also matters for nbval: a cell with no execution count is compared with
nothing, so `# NBVAL_CHECK_OUTPUT` cells assert their facts themselves (see the notebooks).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
REPO = "planet-colab/planet_colab"
COLAB_GUARD = 'if "google.colab" in sys.modules:'
# Notebooks call the package and display; loops and definitions belong in planet_colab/.
LOGIC = re.compile(r"^\s*(def |class |for |while |lambda\b|with |try:)", re.M)


def strip_notebook(path: Path) -> bool:
    """Remove outputs, execution counts and widget state from a notebook; True if it changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("outputId", None)  # Colab's per-cell output ids
    nb.metadata.pop("widgets", None)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after)
    return after != before


def test_there_are_the_three_colab_notebooks():
    names = [p.name for p in NOTEBOOKS]
    for name in ("01_setup_and_seed_episodes.ipynb", "02_train_planner.ipynb",
                 "03_evaluate_and_visualize.ipynb"):
        assert name in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run `python tests/test_notebooks_clean.py`"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state stored; strip it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_in_colab_and_installs_only_there(path):
    nb = nbformat.read(path, as_version=4)
    first_md = next(c.source for c in nb.cells if c.cell_type == "markdown")
    assert f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{path.name}" in first_md
    install = next(c.source for c in nb.cells if c.cell_type == "code")
    assert COLAB_GUARD in install
    guarded = install.split(COLAB_GUARD, 1)[1]
    assert f"pip install -q --no-deps git+https://github.com/{REPO}" in guarded
    assert "mount_drive()" in guarded
    # Reinstalling Colab's torch (its CUDA build), gymnasium or pygame would cost minutes and can break
    # the runtime: torch is never named, and the rest only as lower bounds, which pip leaves alone
    # when Colab's version satisfies them.
    pip_lines = re.findall(r"pip install[^\n]*", install)
    assert pip_lines and all(line in guarded for line in pip_lines)
    for line in pip_lines:
        assert not re.search(r"\btorch\b|--upgrade|\s-U\b|--force-reinstall|==", line), line
        for heavy in ("gymnasium", "pygame"):
            assert not re.search(rf"\b{heavy}\b(?!>=)", line), f"{heavy} without a lower bound: {line}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_logic_beyond_calls_and_display(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            found = LOGIC.search(cell.source)
            assert not found, f"{path.name} cell {i}: move `{found.group(0).strip()}` logic into planet_colab"


def test_notebooks_share_the_run_directory_and_preset():
    for path in NOTEBOOKS:
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        assert 'preset = "smoke" if os.environ.get("CI") else "pendulum"' in source, path.name
        assert "default_run_dir(" in source, path.name


if __name__ == "__main__":
    changed = [p.name for p in NOTEBOOKS if strip_notebook(p)]
    print(f"stripped: {', '.join(changed) if changed else 'nothing to strip'}")
    sys.exit(0)
