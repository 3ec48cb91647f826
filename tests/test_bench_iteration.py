"""`bench iteration` times one real iteration of the loop by phase, and leaves a run it copies untouched."""

import json

import pytest

from planet_colab.bench.iteration import main
from planet_colab.bench.timers import Timers


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_one_smoke_iteration_reports_every_phase_and_the_hours_it_projects(capsys):
    main(["--preset", "smoke", "--threads", "1", "--compare-steps", "1"])
    out = last_json(capsys)
    assert out["bench"] == "iteration" and out["threads"] == 1 and out["train_steps"] == 3
    phases = out["phases"]
    assert phases["train"]["parts_cpu_s"]["backward (all parts)"] > 0
    assert phases["collect"]["parts_cpu_s"]["planner (CEM)"] > 0
    assert phases["collect"]["parts_cpu_s"]["env: rendering"] > 0
    wall = out["per_iteration"]["wall"]
    # smoke evaluates 2 episodes every 2 iterations: one evaluation episode's time per iteration.
    assert wall["eval_share_s"] == pytest.approx(phases["eval_episode"]["wall_s"], abs=0.02)
    assert wall["total_s"] == pytest.approx(wall["train_s"] + wall["collect_s"] + wall["eval_share_s"], abs=0.02)
    assert out["hours_to_100_episodes"]["wall"] == pytest.approx(98 * wall["total_s"] / 3600, abs=0.01)
    assert set(out["train_step_alone"]) == {"same real batch", "fresh real batch", "random pixels"}


def test_a_copied_run_is_read_not_written(tmp_path, capsys):
    from planet_colab.run import Run
    from planet_colab.train import train_planner

    run = Run.open(tmp_path / "run", "smoke", changes={"total_iterations": 2})
    train_planner(run, progress=False)
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    main(["--run-dir", str(tmp_path / "run"), "--threads", "1", "--no-eval", "--compare-steps", "0",
          "--set", "eval_every=1"])
    text = capsys.readouterr().out
    out = json.loads(text.strip().splitlines()[-1])
    assert out["from_checkpoint"] and out["iteration"] == 2  # the iteration after the newest checkpoint
    assert out["config"]["eval_every"] == 1 and "Recovered" not in text  # --set applies to the copy
    assert sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_timers_put_back_what_they_wrapped():
    class Thing:
        def work(self) -> int:
            return 3

    thing = Thing()
    with Timers() as timers:
        timers.wrap(thing, "work", "work")
        assert thing.work() == 3 and timers.calls["work"] == 1
    assert "work" not in thing.__dict__ and thing.work() == 3


def test_bench_warm_scores_each_variant_against_the_papers_cem_from_the_same_beliefs(tmp_path, capsys):
    from planet_colab.bench.warm import main as warm
    from planet_colab.run import Run
    from planet_colab.train import train_planner

    run = Run.open(tmp_path / "run", "smoke", changes={"total_iterations": 1})
    train_planner(run, progress=False)
    warm(["--run-dir", str(tmp_path / "run"), "--variants", "16x2", "16x1w", "--steps", "4", "--samples", "2"])
    out = last_json(capsys)
    assert set(out["variants"]) == {"1000x10", "16x2", "16x1w"} and out["steps"] == 4
    assert out["variants"]["1000x10"]["minus_paper_mean"] == 0.0
    with pytest.raises(ValueError, match="CANDIDATESxREFITS"):
        warm(["--run-dir", str(tmp_path / "run"), "--variants", "lots"])
