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
    with pytest.raises(SystemExit, match="no evaluation yet"):
        summarize([r for r in rows() if "eval_mean" not in r], [-1200.0], 1.0)
