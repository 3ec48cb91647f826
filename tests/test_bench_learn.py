"""`bench learn`'s published figures come from the run's metrics rows, the last evaluation being final."""

import pytest

from planet_colab.bench.learn import plot, summarize


def rows():
    out = []
    for it in range(6):
        row = {"iteration": it, "episodes": 6 + it, "env_steps": 200 * (6 + it), "collect_return": -1000.0 + 100 * it,
               "train_s": 2.0, "collect_s": 1.0, "seconds": 3.0}
        if it % 2 == 1:
            row.update(eval_mean=-900.0 + 100 * it, eval_std=10.0 * it, eval_returns=[0.0] * 4)
        out.append(row)
    return out


def test_summary_reports_the_last_evaluation_and_every_collected_episode(tmp_path):
    summary = summarize(rows(), [-1200.0, -1100.0], wall_clock_s=18.0)
    assert (summary["episodes"], summary["eval_mean_return"], summary["eval_std"]) == (11, -400.0, 50.0)
    assert summary["best_eval_mean_return"] == -400.0 and summary["eval_episodes"] == 4
    assert summary["random_mean_return"] == -1150.0
    assert [c[0] for c in summary["curve"]] == [7, 9, 11]
    assert summary["collect_curve"][0] == [6, -1000.0] and len(summary["collect_curve"]) == 6
    plot(summary, "test", tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000


def test_a_run_without_evaluation_is_refused_with_a_message():
    with pytest.raises(ValueError, match="no evaluation yet"):
        summarize([r for r in rows() if "eval_mean" not in r], [-1200.0], 1.0)


def test_a_run_stopped_between_evaluations_is_published_with_a_fresh_evaluation(tmp_path):
    from planet_colab.bench.learn import evaluate_newest
    from planet_colab.run import Run
    from planet_colab.train import train_planner

    run = Run.open(tmp_path / "run", "smoke", changes={"total_iterations": 3, "eval_every": 5,
                                                      "checkpoint_every": 1})
    train_planner(run, progress=False)
    rows = run.read_metrics()
    assert [("eval_mean" in r) for r in rows] == [False, False, True]  # the last iteration always evaluates
    # As if the run had stopped before its last iteration's evaluation.
    stopped = rows[:2] + [{k: v for k, v in rows[2].items() if not k.startswith("eval_")}]
    reader = Run.open(tmp_path / "run", new_ok=False)
    published = evaluate_newest(reader, reader.restore_agent(), stopped)
    assert len(published) == 3 and published[-1]["evaluated_when_published"]
    # The same seeds as the loop's own evaluation of that iteration: the same returns.
    assert published[-1]["eval_returns"] == rows[-1]["eval_returns"]
    assert "evaluated_when_published" not in run.read_metrics()[2]  # metrics.jsonl is left as it is


def test_a_run_short_of_its_iterations_is_published_as_in_progress_and_hand_notes_survive(tmp_path):
    from planet_colab.bench.learn import markdown
    from planet_colab.hand_notes import NOTES_END, NOTES_START, kept_notes
    from planet_colab.config import get_config

    summary = summarize([{**r, "threads": 1} for r in rows()], [-1200.0], wall_clock_s=18.0)
    png, md = tmp_path / "smoke.png", tmp_path / "smoke.md"
    unfinished = get_config("smoke", total_iterations=10)
    page = markdown(summary, unfinished, tmp_path / "run", png)
    assert "**In progress:** published after iteration 6 of 10 (11 of 12 episodes)" in page
    assert "the run trained with 1 torch thread(s)" in page and "Latest noise-free evaluation" in page
    finished = markdown(summary, get_config("smoke", total_iterations=6), tmp_path, png)
    assert "In progress" not in finished and "Final noise-free evaluation" in finished

    # What a person added between the markers is carried into the next publish, once, as written.
    notes = f"{NOTES_START}\nWhy the sizes differ from the preset: measured, see above.\n{NOTES_END}"
    assert page.count(f"{NOTES_START}\n{NOTES_END}") == 1  # a new page: the place to write, empty
    md.write_text(page.replace(f"{NOTES_START}\n{NOTES_END}", notes))
    assert kept_notes(md) == notes
    republished = markdown(summary, unfinished, tmp_path / "run", png, notes=kept_notes(md))
    assert republished.count("Why the sizes differ") == 1 and republished.index(notes) < republished.index("| episodes |")
    assert kept_notes(tmp_path / "missing.md") == f"{NOTES_START}\n{NOTES_END}"


def test_publishing_again_keeps_the_notes_and_never_shows_settings_the_run_did_not_have(tmp_path, capsys):
    from planet_colab.bench.learn import main
    from planet_colab.hand_notes import NOTES_END, NOTES_START

    run_dir, out = tmp_path / "run", tmp_path / "results"
    main(["--preset", "smoke", "--run-dir", str(run_dir), "--out", str(out), "--iterations", "2",
          "--set", "eval_every=2"])
    page = (out / "smoke.md").read_text()
    assert "Final noise-free evaluation after 4 episodes" in page and "In progress" not in page
    notes = f"{NOTES_START}\nA person's analysis.\n{NOTES_END}"
    (out / "smoke.md").write_text(page.replace(f"{NOTES_START}\n{NOTES_END}", notes))
    config_before = (run_dir / "config.json").read_bytes()

    # Publishing never changes what it shows: settings for the run are refused, the run left as it was.
    with pytest.raises(ValueError, match="--no-train publishes the run as it is"):
        main(["--no-train", "--run-dir", str(run_dir), "--out", str(out), "--set", "eval_episodes=5"])
    assert (run_dir / "config.json").read_bytes() == config_before

    # The run extended to 4 iterations but not trained yet: published as in progress, notes kept.
    from planet_colab.run import Run

    with Run.open(run_dir, changes={"total_iterations": 4}).own():
        pass  # saves the change to config.json, as `train --iterations 4` does before it trains
    main(["--no-train", "--run-dir", str(run_dir), "--out", str(out)])
    page = (out / "smoke.md").read_text()
    assert "**In progress:** published after iteration 2 of 4 (4 of 6 episodes)" in page
    assert page.count("A person's analysis.") == 1
    assert '"episodes": 4' in capsys.readouterr().out.splitlines()[-1]  # the JSON line comes last


def test_benchmarks_end_a_user_error_in_one_line_like_the_command_line(tmp_path, capsys):
    from planet_colab.bench.__main__ import main as bench

    with pytest.raises(SystemExit) as ended:
        bench(["learn", "--no-train", "--run-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")])
    assert ended.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "is not a run directory" in err and "\n" not in err
    bench(["--help"])
    assert "learn" in capsys.readouterr().out

    # A wrong option ends the same way (argparse's own would print the usage and the error on two lines).
    for argv in (["train", "--steps", "0"], ["plan", "--no-such-option"], ["oracle", "--preset", "cartpole_swingup"]):
        with pytest.raises(SystemExit) as ended:
            bench(argv)
        err = capsys.readouterr().err.strip()
        assert ended.value.code == 2 and err.startswith("error: ") and "\n" not in err, (argv, err)
