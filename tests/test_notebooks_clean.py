"""The committed notebooks are clean and agree with the repository: no outputs, Colab-first install
cell, badges and install URL from pyproject.toml's `Repository`, the task picker listing every task.

Make them so before committing with `python tests/test_notebooks_clean.py`: it strips outputs, and
writes the repository (from pyproject.toml) into the notebooks and the README's badges and the task
list (from PRESETS) into notebook 01's picker. A fork edits `Repository` once and runs it.
Why stripping also matters for nbval: a cell with no execution count is compared with nothing, so
`# NBVAL_CHECK_OUTPUT` cells assert their facts themselves (see the notebooks).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
README = ROOT / "README.md"
COLAB_GUARD = 'if "google.colab" in sys.modules:'
# Notebooks call the package and display; loops and definitions belong in planet_colab/.
LOGIC = re.compile(r"^\s*(def |class |for |while |lambda\b|with |try:)", re.M)
# The places a repository is named: Colab badges (notebooks, README) and the notebooks' pip line.
COLAB_LINK = re.compile(r"(https://colab\.research\.google\.com/github/)([^/\s]+/[^/\s]+)(/blob/)")
PIP_URL = re.compile(r'(git\+https://github\.com/)([^/\s"]+/[^/\s"]+?)(\.git)?(")')
CLONE = re.compile(r"(git clone https://github\.com/)([^/\s]+/[^/\s]+?)(\.git)?(\s)")
PICKER = re.compile(r'^(PRESET = "\w+"  #@param )(\[.*\])$', re.M)
# The install cell's stop while pyproject.toml says nothing is published at Repository yet.
UNPUBLISHED = re.compile(r'^    raise SystemExit\(.*\)  # repository_published = false\n', re.M)


def repository() -> str:
    """owner/name from pyproject.toml's [project.urls] Repository (a GitHub URL)."""
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'^Repository\s*=\s*"https://github\.com/([^/"\s]+/[^/"\s]+?)(?:\.git)?/?"', text, re.M)
    assert found, 'pyproject.toml needs [project.urls] Repository = "https://github.com/OWNER/NAME"'
    return found.group(1)


def repository_published() -> bool:
    """pyproject.toml's [tool.planet_colab] repository_published: whether anything is at Repository yet."""
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r"^repository_published\s*=\s*(true|false)\s*$", text, re.M)
    assert found, "pyproject.toml needs [tool.planet_colab] repository_published = true or false"
    return found.group(1) == "true"


def unpublished_stop(repo: str) -> str:
    """The install cell's first Colab line while nothing is published at `repo`: one line saying what to do."""
    message = (f"planet_colab is not published at github.com/{repo} yet (pyproject.toml's Repository is a "
               "placeholder): publish it there, or fork it, set Repository and repository_published = true in "
               "pyproject.toml, run python tests/test_notebooks_clean.py and open the notebooks from the fork")
    return f"    raise SystemExit({message!r})  # repository_published = false\n"


def _with_install_stop(text: str, repo: str, published: bool) -> str:
    text = UNPUBLISHED.sub("", text)
    if published:
        return text
    return text.replace(f"{COLAB_GUARD}\n", f"{COLAB_GUARD}\n{unpublished_stop(repo)}", 1)


def _with_repository(text: str, repo: str) -> str:
    text = COLAB_LINK.sub(lambda m: m.group(1) + repo + m.group(3), text)
    text = CLONE.sub(lambda m: m.group(1) + repo + m.group(4), text)
    return PIP_URL.sub(lambda m: m.group(1) + repo + m.group(4), text)


def _with_tasks(text: str) -> str:
    from planet_colab.colab import notebook_tasks

    return PICKER.sub(lambda m: m.group(1) + json.dumps(notebook_tasks()), text)


def canonicalise_notebook(path: Path, repo: str) -> bool:
    """Strip outputs and widget state, write the repository and task list; True if the file changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    install = next(c for c in nb.cells if c.cell_type == "code")
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.source = _with_tasks(cell.source)
        cell.source = _with_repository(cell.source, repo)
        cell.metadata.pop("execution", None)
        cell.metadata.pop("outputId", None)  # Colab's per-cell output ids
    install.source = _with_install_stop(install.source, repo, repository_published())
    nb.metadata.pop("widgets", None)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after)
    return after != before


def canonicalise_readme(repo: str) -> bool:
    """Write the repository into README.md's Colab badges; True if the file changed."""
    before = README.read_text()
    after = _with_repository(before, repo)
    if after != before:
        README.write_text(after)
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
    repo = repository()
    fix = "run `python tests/test_notebooks_clean.py`"
    nb = nbformat.read(path, as_version=4)
    first_md = next(c.source for c in nb.cells if c.cell_type == "markdown")
    assert f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{path.name}" in first_md, fix
    install = next(c.source for c in nb.cells if c.cell_type == "code")
    assert COLAB_GUARD in install
    guarded = install.split(COLAB_GUARD, 1)[1]
    assert f'pip install -q "planet_colab @ git+https://github.com/{repo}"' in guarded, fix
    # Nothing published at Repository yet: Colab stops in one line before pip fails on the address.
    assert guarded.startswith(f"\n{unpublished_stop(repo)}") != repository_published(), fix
    # A notebook that opens the run mounts Drive, where the run lives; the data tour (00) touches neither.
    opens_run = any("open_notebook_run(" in c.source for c in nb.cells if c.cell_type == "code")
    assert ("mount_drive()" in guarded) == opens_run, path.name
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
def test_unpublished_install_cell_stops_in_colab_in_one_line_before_pip(path, monkeypatch):
    if repository_published():
        pytest.skip("pyproject.toml says the repository is published: the install cell installs from it")
    from types import ModuleType

    from IPython.core.inputtransformer2 import TransformerManager

    install = next(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    monkeypatch.setitem(sys.modules, "google.colab", ModuleType("google.colab"))
    shell = type("Shell", (), {"system": lambda self, command: pytest.fail(f"ran {command}")})()
    with pytest.raises(SystemExit) as stop:
        exec(TransformerManager().transform_cell(install), {"get_ipython": lambda: shell})
    message = str(stop.value)
    assert len(message.splitlines()) == 1 and f"not published at github.com/{repository()}" in message
    assert "python tests/test_notebooks_clean.py" in message


def test_readme_badges_and_fork_note_name_the_repository():
    repo = repository()
    readme = README.read_text()
    linked = {m.group(2) for pattern in (COLAB_LINK, CLONE) for m in pattern.finditer(readme)}
    assert linked == {repo}, f"README badges name {linked}, pyproject.toml {repo}; run `python tests/test_notebooks_clean.py`"
    for path in NOTEBOOKS:
        assert f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{path.name}" in readme
    assert "pyproject.toml" in readme and "python tests/test_notebooks_clean.py" in readme


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_logic_beyond_calls_and_display(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            found = LOGIC.search(cell.source)
            assert not found, f"{path.name} cell {i}: move `{found.group(0).strip()}` logic into planet_colab"


def test_notebooks_share_the_run_directory_and_preset():
    from planet_colab.colab import notebook_tasks

    sources = {p.name: "\n".join(c.source for c in nbformat.read(p, as_version=4).cells) for p in NOTEBOOKS}
    picker = PICKER.search(sources["01_setup_and_seed_episodes.ipynb"])
    assert picker, "notebook 01 needs the task picker: PRESET = \"pendulum\"  #@param [...]"
    assert json.loads(picker.group(2)) == notebook_tasks(), "run `python tests/test_notebooks_clean.py`"
    assert "open_notebook_run(PRESET, threads=THREADS)" in sources["01_setup_and_seed_episodes.ipynb"]
    # Each notebook sets torch's threads in its first cell that opens the run (None: one per core).
    for name in ("01_setup_and_seed_episodes.ipynb", "02_train_planner.ipynb", "03_evaluate_and_visualize.ipynb"):
        assert "THREADS = None" in sources[name] and "threads=THREADS)" in sources[name], name
    # 02 and 03 take the task picked in 01 (remembered next to the runs), never their own.
    for name in ("02_train_planner.ipynb", "03_evaluate_and_visualize.ipynb"):
        assert "open_notebook_run(" in sources[name] and "PRESET" not in sources[name], name
    assert 'notebook_preset("pendulum", remember=False)' in sources["00_data_pipeline_tour.ipynb"]
    # After a disconnect, Run all in 02 waits out the lost runtime's lease instead of failing on it.
    train = sources["02_train_planner.ipynb"]
    assert -1 < train.find("wait_for_lapse(run.run_dir)") < train.find("train_planner(run")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    repo = repository()
    changed = [p.name for p in NOTEBOOKS if canonicalise_notebook(p, repo)]
    changed += ["README.md"] if canonicalise_readme(repo) else []
    print(f"repository {repo}; rewrote: {', '.join(changed) if changed else 'nothing (all agree)'}")
    sys.exit(0)
