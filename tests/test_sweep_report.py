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


def test_a_count_one_seed_passed_without_evaluating_is_no_point_of_the_curve(tmp_path):
    # Seed 0 evaluated every episode count from 4 on, seed 1 (a later --eval-every) only at 4 and 6: the
    # mean at 5 would be seed 0's alone although both passed it. Seed 1 has not reached 7 yet: kept.
    _make_run(tmp_path, "smoke", 0, {4: -200.0, 5: -150.0, 6: -100.0, 7: -50.0}, iterations=5, total=5)
    _make_run(tmp_path, "smoke", 1, {4: -300.0, 6: 0.0}, iterations=4, total=5)
    curve = summarize(tmp_path)["presets"]["smoke"]["curve"]
    assert [(c["episodes"], c["seeds"]) for c in curve] == [(4, 2), (6, 2), (7, 1)]
    assert summarize(tmp_path)["presets"]["smoke"]["runs"]["seed_0"]["episodes"] == [4, 5, 6, 7]  # its own line


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


def test_a_finished_run_whose_directory_went_with_its_machine_is_kept_and_an_unfinished_one_left_out(
        root, tmp_path, tmp_path_factory, capsys):
    import shutil

    out, gone = tmp_path / "docs", tmp_path_factory.mktemp("elsewhere")
    _make_run(root, "smoke", 2, {4: -400.0, 6: -50.0}, iterations=4)
    assert main(["sweep-report", "--root", str(root), "--out", str(out)]) == 0
    first = json.loads((out / "sweep.json").read_text())["presets"]["smoke"]
    # The machine goes with seeds 0 (finished) and 1 (at iteration 3 of 4); seed 2 is still on disk.
    for seed in (0, 1):
        shutil.move(root / "smoke" / f"seed_{seed}", gone / f"seed_{seed}")
    capsys.readouterr()
    assert main(["sweep-report", "--root", str(root), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"smoke/seed_0 kept from {out / 'sweep.json'}: finished, and no longer under {root}" in said
    assert f"smoke/seed_1 (iteration 3 of 4) is in {out / 'sweep.json'} but no longer under {root}" in said
    smoke = json.loads((out / "sweep.json").read_text())["presets"]["smoke"]
    assert smoke["seeds"] == [0, 2] and smoke["runs"]["seed_0"] == {**first["runs"]["seed_0"],
                                                                   "kept_from_earlier_report": True}
    assert smoke["curve"] == [{"episodes": 4, "mean": -300.0, "std": 100.0, "seeds": 2},
                              {"episodes": 6, "mean": -75.0, "std": 25.0, "seeds": 2}]
    assert smoke["benchmark"]["seeds"] == 2
    markdown = (out / "sweep.md").read_text()
    assert "| smoke/seed_0 (kept from the earlier report) | 4 of 4 |" in markdown and "smoke/seed_1" not in markdown
    assert "All 2 runs finished their iterations. 1 run (smoke/seed_0) is kept from the earlier report" in markdown

    # Kept again by the next report (from the page that kept it); an empty root still has a page to make.
    shutil.move(root / "smoke" / "seed_2", gone / "seed_2")
    assert main(["sweep-report", "--root", str(root), "--out", str(out)]) == 0
    assert json.loads((out / "sweep.json").read_text())["presets"]["smoke"]["seeds"] == [0, 2]

    # A run under the root is the truth: a new seed 0 replaces the kept one; --forget leaves one out.
    _make_run(root, "smoke", 0, {3: -10.0}, iterations=1)
    assert main(["sweep-report", "--root", str(root), "--out", str(out), "--forget", "smoke/seed_2"]) == 0
    smoke = json.loads((out / "sweep.json").read_text())["presets"]["smoke"]
    assert smoke["seeds"] == [0] and smoke["runs"]["seed_0"]["eval_mean"] == [-10.0]
    assert "kept_from_earlier_report" not in smoke["runs"]["seed_0"]
    for forget, message in (("smoke/seed_0", f"--forget smoke/seed_0: that run is still under {root}"),
                            ("smoke/seed_9", "--forget smoke/seed_9: the earlier report holds no such run")):
        assert main(["sweep-report", "--root", str(root), "--out", str(out), "--forget", forget]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_damaged_entries_of_an_earlier_report_are_not_kept_and_break_nothing(root, tmp_path):
    out = tmp_path / "docs"
    assert main(["sweep-report", "--root", str(root), "--out", str(out)]) == 0
    earlier = json.loads((out / "sweep.json").read_text())
    good = earlier["presets"]["smoke"]["runs"]["seed_0"]
    earlier["presets"]["smoke"]["runs"].update({
        "seed_5": {**good, "iterations_done": "four"}, "seed_6": {**good, "config": {"no_such_field": 1}},
        "seed_7": "text", "seed_8": {k: v for k, v in good.items() if k != "eval_mean"}})
    earlier["presets"]["pendulum"] = {"runs": ["not", "a", "dict"]}
    (out / "sweep.json").write_text(json.dumps(earlier))
    assert main(["sweep-report", "--root", str(root), "--out", str(out)]) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert list(summary["presets"]) == ["smoke"] and summary["presets"]["smoke"]["seeds"] == [0, 1]


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


# ----------------------------------------------------------------------------- the benchmark table

def _make_task_run(root: Path, preset: str, seed: int, iterations: int, returns: dict[int, float],
                   total: int | None = None, row_extra: dict | None = None, **changes) -> Path:
    """A task preset's run directory: its config (the preset's, with `changes`) and `iterations` metrics rows,
    each 36 s of wall time, evaluated on the preset's own schedule (eval_mean from `returns`, else 0)."""
    from planet_colab.train import evaluates

    config = get_config(preset, seed=seed, **({"total_iterations": total} if total else {}), **changes)
    run_dir = root / preset / f"seed_{seed}"
    run_dir.mkdir(parents=True)
    config.save(run_dir / "config.json")
    rows = []
    for it in range(iterations):
        episodes = config.seed_episodes + (it + 1) * config.collect_episodes
        row = {"iteration": it, "episodes": episodes, "collect_return": 1.0, "seconds": 35.0, "checkpoint_s": 1.0,
               **(row_extra or {})}
        if evaluates(config, it):
            row.update(eval_mean=returns.get(episodes, 0.0), eval_std=5.0)
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


CPU_ROW = {"cpu": "Test CPU 9000", "cpu_flags": ["avx2", "amx_bf16"], "threads": 1}


def test_the_benchmark_table_holds_the_return_at_95_episodes_beside_planet_and_dreamer(tmp_path):
    from planet_colab.sweep_report import plot_sweep

    root = tmp_path / "bench"
    # Two seeds past their 95-episode evaluation (iteration 90 of 100), one still at iteration 50.
    _make_task_run(root, "cartpole_swingup", 0, 92, {95: 300.0, 55: 100.0}, row_extra=CPU_ROW)
    _make_task_run(root, "cartpole_swingup", 1, 91, {95: 320.0, 55: 120.0}, row_extra=CPU_ROW)
    _make_task_run(root, "cartpole_swingup", 2, 50, {55: 140.0}, row_extra=CPU_ROW)
    assert main(["sweep-report", "--root", str(root), "--out", str(tmp_path / "page")]) == 0
    summary = json.loads((tmp_path / "page" / "sweep.json").read_text())
    data = summary["presets"]["cartpole_swingup"]
    bench = data["benchmark"]
    assert bench["published"]["planet"] == 303.0 and bench["published"]["dreamer"] == 326.0
    assert "CURL" in bench["published"]["source"] and "DrQ" in bench["published"]["source"]
    assert {k: bench[k] for k in ("episodes", "at_episodes", "mean", "std", "seeds", "of", "in_progress")} == \
        {"episodes": 95, "at_episodes": 95, "mean": 310.0, "std": 10.0, "seeds": 2, "of": 3, "in_progress": True}
    # Hours to the 95-episode evaluation: 90 iterations of 36 s (35 s + 1 s checkpoint).
    assert bench["hours"] == {"seed_0": pytest.approx(0.9), "seed_1": pytest.approx(0.9)}
    assert bench["machines"] == ["Test CPU 9000 (avx2, amx_bf16), 1 thread"]
    # Each run's whole config, to check against the preset's.
    assert data["runs"]["seed_1"]["config"] == get_config("cartpole_swingup", seed=1).to_dict()
    assert data["at_preset_defaults"] is True and data["preset_differences"] == {}

    markdown = (tmp_path / "page" / "sweep.md").read_text()
    assert "| task | episodes | return | PlaNet@100k | Dreamer@100k | hours per run | CPU |" in markdown
    assert ("| `cartpole_swingup` | 95 | 310.0 ± 10.0 (2 of 3 seeds) | 303 | 326 | 0.90 "
            "| Test CPU 9000 (avx2, amx_bf16), 1 thread |") in markdown
    assert "At the preset's defaults (every seed's config is the preset's `get_config(preset)` but for seed, " \
        "total_iterations, checkpoint_every, checkpoint_minutes, keep_checkpoints, eval_every, precision): " \
        "`cartpole_swingup`." in markdown
    assert "cartpole_swingup/seed_2 at iteration 50 of 100" in markdown  # the status line says who is on the way

    # The figure: one panel per task, PlaNet@100k and Dreamer@100k as horizontal lines.
    fig = plot_sweep(summary)
    (ax,) = fig.axes
    lines = {l.get_label(): l for l in ax.lines}
    assert list(lines["PlaNet@100k (303)"].get_ydata()) == [303.0, 303.0]
    assert list(lines["Dreamer@100k (326)"].get_ydata()) == [326.0, 326.0]
    assert len(ax.collections) == 1  # the band across seeds
    assert sum(l.get_alpha() == 0.35 for l in ax.lines) == 3  # each seed thin


def test_cpu_hours_stand_beside_the_wall_hours_only_where_every_row_records_them(tmp_path):
    root = tmp_path / "bench"
    # Two seeds whose rows all record process CPU time (20 s of each 35 s iteration: the rest was waiting).
    _make_task_run(root, "cartpole_swingup", 0, 92, {95: 300.0}, row_extra={**CPU_ROW, "cpu_s": 20.0})
    _make_task_run(root, "cartpole_swingup", 1, 92, {95: 320.0}, row_extra={**CPU_ROW, "cpu_s": 20.0})
    assert main(["sweep-report", "--root", str(root), "--out", str(tmp_path / "page")]) == 0
    bench = json.loads((tmp_path / "page" / "sweep.json").read_text())["presets"]["cartpole_swingup"]["benchmark"]
    assert bench["cpu_hours_per_run"] == pytest.approx(0.5)  # 90 iterations × 20 s
    assert "| 303 | 326 | 0.90 (0.50 CPU) | Test CPU 9000" in (tmp_path / "page" / "sweep.md").read_text()

    # A third seed resumed onto a loop that records CPU time: its earlier rows have none, so no CPU hours.
    run_dir = _make_task_run(root, "cartpole_swingup", 2, 92, {95: 310.0}, row_extra=CPU_ROW)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows[50:]:
        row["cpu_s"] = 20.0
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["sweep-report", "--root", str(root), "--out", str(tmp_path / "page")]) == 0
    bench = json.loads((tmp_path / "page" / "sweep.json").read_text())["presets"]["cartpole_swingup"]["benchmark"]
    assert bench["cpu_hours_per_run"] is None and bench["cpu_hours"]["seed_2"] is None
    assert "| 303 | 326 | 0.90 | Test CPU 9000" in (tmp_path / "page" / "sweep.md").read_text()


def test_a_run_in_progress_is_read_where_it_is_and_cpu_fills_in_unrecorded_rows(root, tmp_path):
    _make_task_run(root, "reacher_easy", 0, 40, {45: 50.0})  # rows that record no CPU
    out = tmp_path / "page"
    assert main(["sweep-report", "--root", str(root), "--out", str(out), "--cpu", "Laptop i7 | 2 threads"]) == 0
    markdown = (out / "sweep.md").read_text()
    # reacher_easy's table point is 95 episodes; it has reached 45: read there, and said to be in progress.
    assert "| `reacher_easy` | 45 of 95 (in progress) | 50.0 (1 seed) | 140 | 314 | 0.40 | Laptop i7 \\| 2 threads |" \
        in markdown
    # smoke has no published figure; its last evaluation (6 episodes) is the table's point.
    assert "| `smoke` | 6 | -100.0 (1 of 2 seeds) | – | – | 0.00 | Laptop i7 \\| 2 threads |" in markdown


def test_at_preset_defaults_names_the_fields_that_differ(tmp_path):
    root = tmp_path / "sweep"
    # What a run may change: seed, length, checkpoint and evaluation cadence, precision.
    _make_task_run(root, "walker_walk", 0, 2, {}, total=50, eval_every=5, checkpoint_every=7, precision="fp32")
    _make_task_run(root, "cup_catch", 0, 2, {})
    _make_task_run(root, "cup_catch", 1, 2, {}, batch_size=32)
    summary = summarize(root)
    assert summary["presets"]["walker_walk"]["at_preset_defaults"] is True
    cup = summary["presets"]["cup_catch"]
    assert cup["at_preset_defaults"] is False
    assert cup["preset_differences"] == {"batch_size": {"preset": 16, "seed_1": 32}}
    from planet_colab.sweep_report import format_markdown

    markdown = format_markdown(summary)
    assert "- `cup_catch`: **not at the preset's defaults**: batch_size seed_1 32 (preset 16)." in markdown
    assert "precision): `walker_walk`." in markdown


def test_a_config_written_before_a_field_existed_reads_as_that_fields_default(tmp_path, monkeypatch):
    # A preset that moved to ELU after a run started: the run's config.json lacks encoder_activation, and
    # loading it gives ReLU (Config's default), so the report says the run differs, with the value it ran.
    from planet_colab import config as config_module

    root = tmp_path / "sweep"
    run_dir = _make_task_run(root, "walker_walk", 0, 2, {})
    saved = json.loads((run_dir / "config.json").read_text())
    del saved["encoder_activation"]
    (run_dir / "config.json").write_text(json.dumps(saved))
    assert summarize(root)["presets"]["walker_walk"]["at_preset_defaults"] is True
    monkeypatch.setitem(config_module.PRESETS, "walker_walk",
                        {**config_module.PRESETS["walker_walk"], "encoder_activation": "elu"})
    walker = summarize(root)["presets"]["walker_walk"]
    assert walker["preset_differences"] == {"encoder_activation": {"preset": "elu", "seed_0": "relu"}}


def test_the_published_json_names_no_path_of_this_machine(tmp_path, monkeypatch):
    from test_published_paths import MACHINE_PATH

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "sweep"
    _make_task_run(root, "cheetah_run", 0, 12, {15: 10.0}, row_extra=CPU_ROW)
    reference = tmp_path / "elsewhere" / "cheetah_run.json"
    reference.parent.mkdir()
    reference.write_text(json.dumps({"curve": [[15, 5.0, 1.0]]}))
    assert main(["sweep-report", "--root", str(root), "--out", str(tmp_path / "page"),
                 "--reference", f"cheetah_run={reference}"]) == 0
    text = (tmp_path / "page" / "sweep.json").read_text()
    assert str(tmp_path) not in text and not MACHINE_PATH.findall(text)
    assert json.loads(text)["presets"]["cheetah_run"]["reference"]["file"] == "elsewhere/cheetah_run.json"


def test_the_random_policy_is_measured_on_distinct_env_seeds_the_same_way_every_time():
    from planet_colab.baselines import random_policy_return

    config = get_config("smoke")  # Pendulum, 30 environment steps at action repeat 2: 15 agent steps
    lines = []
    figure = random_policy_return(config, episodes=3, say=lines.append)
    assert figure == random_policy_return(config, episodes=3)  # derived seeds: the same numbers again
    assert len(set(figure["returns"])) == 3  # three environment seeds, three episodes
    assert figure["mean"] == pytest.approx(np.mean(figure["returns"]))
    assert figure["std"] == pytest.approx(np.std(figure["returns"]))
    assert {k: figure[k] for k in ("episodes", "seed", "env_name", "action_repeat", "max_episode_steps")} == \
        {"episodes": 3, "seed": 0, "env_name": "Pendulum-v1", "action_repeat": 2, "max_episode_steps": 30}
    assert lines[0].startswith("Measuring smoke's random policy: 3 episodes of 15 steps")
    assert lines[1].startswith(f"smoke's random policy: {figure['mean']:.1f} ± {figure['std']:.1f} over 3 episodes")


def test_random_baseline_draws_a_reference_line_and_a_later_report_keeps_it(root, tmp_path, capsys):
    from planet_colab.sweep_report import plot_sweep

    out = tmp_path / "page"
    assert main(["sweep-report", "--root", str(root), "--out", str(out), "--random-baseline", "smoke"]) == 0
    assert "Measuring smoke's random policy: 10 episodes" in capsys.readouterr().out
    summary = json.loads((out / "sweep.json").read_text())
    figure = summary["presets"]["smoke"]["benchmark"]["random_policy"]
    assert figure["episodes"] == 10 and len(figure["returns"]) == 10 and figure["seed"] == 0
    markdown = (out / "sweep.md").read_text()
    assert "| PlaNet@100k | Dreamer@100k | random policy | hours per run | CPU |" in markdown
    assert f"| – | – | {figure['mean']:.1f} ± {figure['std']:.1f} |" in markdown
    ax = plot_sweep(summary).axes[0]  # one panel, now that smoke has a reference line
    assert any(l.get_label().startswith("random policy (") and l.get_ydata()[0] == figure["mean"] for l in ax.lines)

    # Made again without the option: the figure stays (measured on the same settings), and that is said.
    assert main(["sweep-report", "--root", str(root), "--out", str(out)]) == 0
    assert "smoke's random policy kept from" in capsys.readouterr().out
    assert json.loads((out / "sweep.json").read_text())["presets"]["smoke"]["benchmark"]["random_policy"] == figure


def test_random_baseline_for_a_preset_without_runs_is_one_line_and_measures_nothing(root, capsys):
    assert main(["sweep-report", "--root", str(root), "--random-baseline", "half_cheetah"]) == 2
    err = capsys.readouterr().err
    assert "--random-baseline half_cheetah has no runs to stand beside" in err and err.count("\n") == 1
    assert not (root / "report").exists()


def test_zero_baseline_replays_the_rows_evaluations_with_zero_actions_kept_while_they_stay_replayed_after(root, tmp_path,
                                                                                                    capsys):
    from planet_colab.baselines import zero_policy_returns

    out = tmp_path / "page"
    assert main(["sweep-report", "--root", str(root), "--out", str(out), "--zero-baseline", "smoke"]) == 0
    assert "Playing smoke's evaluations after 6 episodes again with zero actions (1 seed(s), 2 episodes" in \
        capsys.readouterr().out
    figure = json.loads((out / "sweep.json").read_text())["presets"]["smoke"]["benchmark"]["zero_policy"]
    # The row's point is seed 0's evaluation after 6 episodes: iteration 3 (2 seed episodes + 4 collected).
    assert set(figure["runs"]) == {"seed_0"} and figure["runs"]["seed_0"]["iteration"] == 3
    config = get_config("smoke", seed=0, total_iterations=4)
    assert figure["runs"]["seed_0"]["returns"] == zero_policy_returns(config, 3, 2)
    assert figure["runs"]["seed_0"]["returns"] != zero_policy_returns(config, 2, 2)  # another evaluation's seeds
    assert figure["mean"] == pytest.approx(np.mean(figure["runs"]["seed_0"]["returns"]))
    markdown = (out / "sweep.md").read_text()
    assert "| Dreamer@100k | zero actions, same seeds | hours per run |" in markdown
    assert f"| – | – | {figure['mean']:.1f} |" in markdown and "zero actions, same seeds: a policy that does" in markdown

    # Made again without the option: kept while the row's evaluations are the same ones ...
    assert main(["sweep-report", "--root", str(root), "--out", str(out)]) == 0
    assert "smoke's zero-action replay kept from" in capsys.readouterr().out
    assert json.loads((out / "sweep.json").read_text())["presets"]["smoke"]["benchmark"]["zero_policy"] == figure
    # ... and played again, unasked, once the row stands on other evaluations (seed 1 reached 6 episodes too).
    (root / "smoke" / "seed_1" / "metrics.jsonl").unlink()
    (root / "smoke" / "seed_1" / "config.json").unlink()
    (root / "smoke" / "seed_1").rmdir()
    _make_run(root, "smoke", 1, {4: -300.0, 6: 0.0}, iterations=4)
    assert main(["sweep-report", "--root", str(root), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "zero-action replay kept" not in text and "smoke's row stands on newer evaluations" in text
    moved = json.loads((out / "sweep.json").read_text())["presets"]["smoke"]["benchmark"]["zero_policy"]
    assert set(moved["runs"]) == {"seed_0", "seed_1"} and moved["runs"]["seed_0"] == figure["runs"]["seed_0"]
    assert moved["runs"]["seed_1"]["returns"] == zero_policy_returns(get_config("smoke", seed=1, total_iterations=4), 3, 2)
    assert main(["sweep-report", "--root", str(root), "--out", str(out), "--zero-baseline", "half_cheetah"]) == 2
    assert "--zero-baseline half_cheetah has no runs to stand beside" in capsys.readouterr().err


def test_readme_gets_the_benchmark_rows_between_its_markers_and_nothing_else_changes(tmp_path, capsys):
    root = tmp_path / "bench"
    _make_task_run(root, "cartpole_swingup", 0, 92, {95: 300.0}, row_extra=CPU_ROW)
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n\nintro\n<!-- benchmark table: written by sweep-report --readme -->\nold table\n"
                      "<!-- /benchmark table -->\n\nrest\n")
    out = tmp_path / "docs" / "results" / "benchmark"
    assert main(["sweep-report", "--root", str(root), "--out", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Project\n\nintro\n") and text.endswith("\n\nrest\n") and "old table" not in text
    assert "[docs/results/benchmark/sweep.md](docs/results/benchmark/sweep.md)" in text  # relative to the README
    assert "| `cartpole_swingup` | 95 | 300.0 (1 seed) | 303 | 326 |" in text
    assert "(in progress)" in text  # the run is at iteration 92 of 100

    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert main(["sweep-report", "--root", str(root), "--out", str(out), "--readme", str(plain)]) == 2
    err = capsys.readouterr().err
    assert "has no benchmark block to replace" in err and len(err.strip().splitlines()) == 1
    assert plain.read_text() == "no markers\n"
