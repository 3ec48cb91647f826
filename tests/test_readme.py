"""The README is a front door: short, set-up first, every other page linked once from it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PAGES = ("docs/colab.md", "docs/setup.md", "docs/cli.md", "docs/sweeps.md", "docs/results.md", "docs/design.md")


def test_readme_is_short_and_sets_up_within_the_first_screens():
    lines = README.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to a page under docs/"
    first = "\n".join(lines[:80])
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in first
    assert "python -m planet_colab train --preset smoke" in first


def test_every_docs_page_is_linked_once_and_exists():
    for page in PAGES:
        assert (ROOT / page).is_file(), page
        assert len(re.findall(rf"\]\({re.escape(page)}[)#]", README)) == 1, f"link {page} exactly once"


def test_extras_are_quoted_for_zsh_everywhere():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        bare = re.findall(r"pip install[^\n`]*\s-e \.\[", path.read_text())
        assert not bare, f"{path.name}: quote extras (pip install -e \".[dmc]\"): {bare}"


def test_dmc_setup_names_the_installer_and_smoke_has_one_cost():
    assert "python -m planet_colab.dmc_install" in README
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        assert not re.search(r"smoke[^.\n]{0,40}\bseconds\b", text), f"{path.name}: smoke costs about a minute"


def test_the_benchmark_table_is_the_published_pages():
    import json

    from planet_colab.sweep_report import readme_table

    summary = json.loads((ROOT / "docs/results/benchmark/sweep.json").read_text())
    block = readme_table(summary, "docs/results/benchmark/sweep.md")
    assert block in README, ("README's benchmark table is not docs/results/benchmark's: `python -m planet_colab "
                             "sweep-report --root ROOT --out docs/results/benchmark --readme README.md`")
