"""sweep-report: per preset, evaluation return by episodes as mean ± std across seeds; runs in
progress shown up to where they are; TensorBoard files derived from metrics.jsonl, replaced whole."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from skip_reasons import SWEEP_EXTRA

from planet_colab.__main__ import main
from planet_colab.config import get_config
from planet_colab.sweep_report import summarize, write_report, write_tensorboard


def _make_run(root: Path, preset: str, seed: int, evals: dict[int, float], iterations: int,
              total: int = 4) -> Path:
    """A run directory as train_planner leaves it: config.json and metrics.jsonl (smoke sizes)."""
    run_dir = root / preset / f"seed_{seed}"
    run_dir.mkdir(parents=True)
    get_config("smoke", seed=seed, total_iterations=total).save(run_dir / "config.json")
    rows = []
    for it in range(iterations):
        episodes = 3 + it
        row = {"iteration": it, "episodes": episodes, "loss": 10.0 - it, "obs_loss": 9.0, "reward_loss": 0.5,
               "kl_loss": 3.0, "grad_norm": 1.0, "collect_return": -100.0 - seed, "seconds": 2.0}
        if episodes in evals:
            row.update(eval_mean=evals[episodes], eval_std=1.0, eval_returns=[evals[episodes]] * 2)
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


@pytest.fixture
def root(tmp_path) -> Path:
    """smoke: seed 0 finished (evals after 4 and 6 episodes), seed 1 in progress (after 4 only)."""
    _make_run(tmp_path, "smoke", 0, {4: -200.0, 6: -100.0}, iterations=4)
    _make_run(tmp_path, "smoke", 1, {4: -300.0, 6: 0.0}, iterations=3)
    return tmp_path


def test_curve_is_mean_and_std_across_seeds_and_counts_a_run_in_progress(root, capsys):
    assert main(["sweep-report", "--root", str(root)]) == 0
    summary = json.loads((root / "report" / "sweep.json").read_text())
    assert summary == json.loads(json.dumps(summarize(root)))
    curve = summary["presets"]["smoke"]["curve"]
    assert curve == [{"episodes": 4, "mean": -250.0, "std": 50.0, "seeds": 2},
                     {"episodes": 6, "mean": -100.0, "std": 0.0, "seeds": 1}]
    markdown = (root / "report" / "sweep.md").read_text()
    assert "| smoke/seed_1 | 3 of 4 | 5 | -300.0 ± 1.0 | -300.0 ± 1.0 at 4 |" in markdown
    # One seed has no spread across seeds: its mean alone, not "± 0.0".
    assert "| 4 | 2 of 2 | -250.0 ± 50.0 |" in markdown and "| 6 | 1 of 2 | -100.0 |" in markdown
    assert "**In progress:** 1 of 2 runs finished; smoke/seed_1 at iteration 3 of 4." in markdown
    assert "![evaluation return across seeds](sweep.png)" in markdown
    assert (root / "report" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| smoke/seed_0 | 4 of 4 |" in capsys.readouterr().out  # the table is printed too


def test_a_published_run_stands_beside_the_seeds_and_hand_notes_survive_a_new_report(root, tmp_path):
    from planet_colab.hand_notes import NOTES_END, NOTES_START

    reference = tmp_path / "smoke.json"  # bench learn's results JSON: curve rows are [episodes, mean, std]
    reference.write_text(json.dumps({"episodes": 8, "curve": [[4, -150.0, 20.0], [8, -50.0, 10.0]]}))
    out = tmp_path / "docs"
    _make_run(root, "smoke", 2, {}, iterations=0)
    assert main(["sweep-report", "--root", str(root), "--out", str(out),
                 "--reference", f"smoke={reference}"]) == 0
    markdown = (out / "sweep.md").read_text()
    assert not (root / "report").exists()  # --out is where the report goes
    # Outside the working directory: named by its file name, not by this machine's path.
    assert "| episodes | seeds | eval return across seeds | one published run (`smoke.json`) |" in markdown
    assert "| 4 | 2 of 3 | -250.0 ± 50.0 | -150.0 ± 20.0 |" in markdown
    assert "| 8 | 0 of 3 | – | -50.0 ± 10.0 |" in markdown  # episodes only the published run reached
    assert "smoke/seed_1 at iteration 3 of 4; no iteration yet: smoke/seed_2." in markdown
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["presets"]["smoke"]["reference"]["curve"][1] == {"episodes": 8, "mean": -50.0, "std": 10.0}

    # A new page holds the two marker lines (invisible in the rendered page): a person writes between them.
    empty = f"{NOTES_START}\n{NOTES_END}"
    assert markdown.count(empty) == 1
    notes = f"{NOTES_START}\nWhy seed 2 waits: one core.\n{NOTES_END}"
    (out / "sweep.md").write_text(markdown.replace(empty, notes))
    assert main(["sweep-report", "--root", str(root), "--out", str(out)]) == 0
    again = (out / "sweep.md").read_text()
    assert again.count("Why seed 2 waits") == 1 and again.index(notes) < again.index("| run |")
    assert "one published run" not in again  # no --reference this time

    # Markers typed by hand instead of the page's own: the text is not kept, and the report says so.
    (out / "sweep.md").write_text(again.replace(notes, "<!-- notes -->\nLost?\n<!-- /notes -->"))
    with pytest.warns(UserWarning, match="notes marker other than the page's own"):
        write_report(root, out_dir=out, say=lambda line: None)


def test_a_finished_sweep_says_so(tmp_path):
    from planet_colab.sweep_report import format_markdown

    _make_run(tmp_path, "smoke", 0, {4: -1.0}, iterations=4)
    _make_run(tmp_path, "smoke", 1, {4: -2.0}, iterations=4)
    markdown = format_markdown(summarize(tmp_path))
    assert "All 2 runs finished their iterations." in markdown and "In progress" not in markdown


@pytest.mark.parametrize("args, message", [
    (["--reference", "smoke"], "--reference wants PRESET=FILE"),
    (["--reference", "pendulum={good}"], "the reference for 'pendulum' has no runs to stand beside"),
    (["--reference", "smoke={good}", "--reference", "smoke={good}"], "--reference names smoke twice"),
    (["--reference", "smoke={tmp}/missing.json"], "does not exist"),
    (["--reference", "smoke={tmp}"], "is a directory"),
    (["--reference", "smoke={tmp}/no_curve.json"], "holds no evaluation curve"),
    (["--reference", "smoke={tmp}/null.json"], "holds no evaluation curve"),
    (["--reference", "smoke={tmp}/text.json"], "holds no evaluation curve"),
    (["--reference", "smoke={tmp}/fraction.json"], "holds no evaluation curve"),
    (["--out", "{good}"], "--out {good} cannot be a folder: {good} is a file"),
    (["--tensorboard-dir", "{good}/tb"], "--tensorboard-dir {good}/tb cannot be a folder: {good} is a file"),
])
def test_wrong_report_options_are_one_line_and_write_nothing(root, tmp_path, capsys, args, message):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"curve": [[4, -1.0, 1.0]]}))
    for name, curve in (("no_curve", None), ("null", [[4, None, 1.0]]), ("text", [[4, "x", 1.0]]),
                        ("fraction", [[1.7, -100.0, 3.0]])):
        (tmp_path / f"{name}.json").write_text(json.dumps({"episodes": 4} if curve is None else {"curve": curve}))
    args = [a.format(good=good, tmp=tmp_path) for a in args]
    assert main(["sweep-report", "--root", str(root), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(good=good) in err and err.count("\n") == 1, err
    assert not (root / "report").exists() and not (root / "tensorboard").exists()


def test_a_root_that_is_missing_or_a_file_says_which(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for root, says in ((tmp_path / "missing", "does not exist"), (tmp_path / "file", "is a file, not a directory")):
        assert main(["sweep-report", "--root", str(root)]) == 2
        assert f"the sweep's root (--root) {root} {says}" in capsys.readouterr().err


def _scalars(event_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_tensorboard_files_are_derived_from_metrics_and_replaced_whole(root):
    pytest.importorskip("tensorboard", reason=SWEEP_EXTRA)
    out = root / "tb"
    written = write_tensorboard(root, out)
    assert len(written) == 2
    seed_1 = out / "smoke" / "seed_1"
    assert _scalars(seed_1, "return/eval") == [(4, -300.0)]
    assert [s for s, _ in _scalars(seed_1, "loss/total")] == [3, 4, 5]  # step: episodes stored
    assert write_tensorboard(root, out) == []  # unchanged runs are not written again

    _make_run(root, "smoke", 2, {4: -1.0}, iterations=2)
    rows = (root / "smoke" / "seed_1" / "metrics.jsonl").read_text()
    extra = {"iteration": 3, "episodes": 6, "loss": 1.0, "eval_mean": 0.0, "eval_std": 1.0, "seconds": 2.0}
    (root / "smoke" / "seed_1" / "metrics.jsonl").write_text(rows + json.dumps(extra) + "\n")
    assert sorted(p.parent.name for p in write_tensorboard(root, out)) == ["seed_1", "seed_2"]
    assert len(list(seed_1.glob("*tfevents*"))) == 1  # the old file was replaced, never appended to
    assert _scalars(seed_1, "return/eval") == [(4, -300.0), (6, 0.0)]
    assert not list(out.rglob(".*"))  # no temporaries left behind


def test_without_tensorboard_the_report_still_writes_and_says_what_to_install(root, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    lines = []
    write_report(root, say=lines.append)
    assert (root / "report" / "sweep.md").exists()
    assert any("TensorBoard files skipped" in line and "pip install tensorboard" in line for line in lines)
    assert not (root / "tensorboard").exists()


def test_a_root_without_runs_is_one_line(tmp_path, capsys):
    assert main(["sweep-report", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no runs" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_plot_has_a_band_per_preset(root):
    from planet_colab.sweep_report import plot_sweep

    _make_run(root, "pendulum", 0, {4: -50.0}, iterations=2)
    fig = plot_sweep(summarize(root))
    ax = fig.axes[0]
    assert len(ax.collections) == 2  # one shaded band per preset
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    # smoke's point at 6 episodes is seed 0's alone (seed 1 is still on its way): drawn hollow, said so.
    assert labels == ["pendulum (mean of 1 seed ± std)", "smoke (mean of 2 seeds ± std)",
                      "smoke: fewer seeds so far (see the table)"]
    line = next(l for l in ax.lines if l.get_label().startswith("smoke ("))
    np.testing.assert_allclose(line.get_ydata(), [-250.0, -100.0])
    hollow = next(l for l in ax.lines if l.get_label().startswith("smoke:"))
    np.testing.assert_allclose(hollow.get_xdata(), [6])
    assert hollow.get_markerfacecolor() == "white"
