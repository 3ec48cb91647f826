"""Published pages name no machine's paths: run names or paths relative to the sweep or the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# An absolute path of some machine: a Unix home, work or temporary folder, Colab's /content, a Windows drive.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home|Users|tmp|content|mnt|var)/|\b[A-Z]:\\\\")


def _published_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "docs").rglob("*.json"))]


def test_no_published_page_names_an_absolute_machine_path():
    found = {p.relative_to(ROOT).as_posix(): MACHINE_PATH.findall(p.read_text()) for p in _published_files()}
    # docs/sweeps.md shows an example command on a cluster's shared disk (/mnt/shared/…), no real machine.
    found = {name: hits for name, hits in found.items() if hits and name not in ("docs/sweeps.md",)}
    assert not found, f"published pages name machine paths: {found}"


def test_sweep_report_writes_the_sweep_and_its_runs_by_name(tmp_path, monkeypatch):
    from planet_colab.__main__ import main
    from planet_colab.config import get_config

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "my_sweep"
    run = root / "smoke" / "seed_0"
    run.mkdir(parents=True)
    get_config("smoke", total_iterations=2).save(run / "config.json")
    row = {"iteration": 0, "episodes": 3, "env_steps": 90, "collect_return": -1.0, "eval_mean": -1.0,
           "eval_std": 0.0, "eval_returns": [-1.0], "seconds": 1.0}
    (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["sweep-report", "--root", str(root), "--out", str(tmp_path / "page")]) == 0
    for name in ("sweep.json", "sweep.md"):
        text = (tmp_path / "page" / name).read_text()
        assert str(tmp_path) not in text, name
    summary = json.loads((tmp_path / "page" / "sweep.json").read_text())
    assert summary["root"] == "my_sweep" and summary["presets"]["smoke"]["runs"]["seed_0"]["run_dir"] == "smoke/seed_0"


def test_bench_learn_pages_name_the_run_not_its_path(tmp_path):
    from planet_colab.bench.learn import markdown, summarize
    from planet_colab.config import get_config

    rows = [{"iteration": 0, "episodes": 3, "env_steps": 90, "collect_return": -1.0, "eval_mean": -1.0,
             "eval_std": 0.0, "eval_returns": [-1.0], "train_s": 1.0, "collect_s": 1.0, "seconds": 2.0}]
    summary = summarize(rows, [-2.0], wall_clock_s=2.0)
    page = markdown(summary, get_config("smoke", total_iterations=5), tmp_path / "pendulum_v2", tmp_path / "p.png")
    assert str(tmp_path) not in page
    assert "`pendulum_v2`" in page and "In progress" in page
