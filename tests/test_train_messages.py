"""What `train` says while it works: the preset it picked, the cost, the train phase, a reused run."""

from __future__ import annotations

import shutil

import pytest

from planet_colab.__main__ import main as cli
from planet_colab.config import Config

SMALL = ["--iterations", "1", "--no-progress", "--set", "eval_every=100"]


def test_a_new_run_names_its_default_preset_and_cost_and_the_train_phase_is_never_silent(tmp_path, monkeypatch,
                                                                                         capsys):
    monkeypatch.setenv("PLANET_COLAB_RUN_DIR", str(tmp_path / "run"))
    # The pendulum default at smoke sizes: what matters is what is said, not minutes of training.
    smoke_sizes = ["max_episode_steps=30", "cnn_depth=4", "deter_dim=16", "stoch_dim=4", "hidden_dim=16",
                   "batch_size=4", "seq_len=6", "train_steps=3", "horizon=3", "candidates=16", "optim_iters=2",
                   "top_k=4", "seed_episodes=2", "eval_episodes=1", "precision=fp32"]
    assert cli(["train", *SMALL, *smoke_sizes]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "No --preset given: a new pendulum run in" in out and "smoke" in out
    assert "pendulum: 1 iteration, estimated" in out
    lines = out.splitlines()
    started = next(i for i, line in enumerate(lines) if line.startswith("Starting a new run"))
    assert lines[started + 1].startswith("Iteration 1 of 1: train 3 gradient steps, collect 1 episode")


def test_a_resumed_run_says_neither_cost_nor_new_and_names_its_preset(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--preset", "smoke", "--run-dir", str(run), *SMALL]) == 0
    capsys.readouterr()
    assert cli(["train", "--run-dir", str(run), "--iterations", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "estimated" not in out and "No --preset" not in out
    assert "Resumed from checkpoint after iteration 1 of 2 (smoke preset" in out


def test_a_run_with_stored_episodes_but_no_checkpoint_says_it_reuses_them(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--preset", "smoke", "--run-dir", str(run), *SMALL]) == 0
    shutil.rmtree(run / "checkpoints")
    capsys.readouterr()
    assert cli(["train", "--run-dir", str(run), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "Starting a new run" not in out
    assert "from iteration 1 (no checkpoint yet), reusing its 3 stored episodes" in out


def test_the_train_phase_reports_each_step_to_a_phase_callback(tmp_path):
    from planet_colab.config import get_config
    from planet_colab.run import Run
    from planet_colab.train import train_planner
    from planet_colab.viz import LiveDashboard

    heard = []
    run = Run.open(tmp_path / "run", "smoke", changes={"total_iterations": 2, "eval_every": 2})
    dashboard = LiveDashboard(2, show=False)
    train_planner(run, progress=False, phase=lambda *event: (heard.append(event), dashboard.phase(*event)))
    steps = get_config("smoke").train_steps
    first = heard[:steps + 2]
    assert first == [("train", k, steps) for k in range(steps + 1)] + [("collect", 0, 1)]
    assert ("evaluate", 0, get_config("smoke").eval_episodes) in heard


def test_paper_sizes_put_a_run_on_planets_own_sizes_and_set_still_wins(tmp_path, capsys):
    run = tmp_path / "run"
    # Smoke's tiny model and episode, so that only the paper's recipe fields (and the KL) change.
    small = ["seq_len=6", "batch_size=4", "train_steps=2", "cnn_depth=4", "candidates=16", "optim_iters=2",
             "top_k=4"]
    assert cli(["train", "--preset", "smoke", "--run-dir", str(run), "--paper-sizes", *SMALL, *small]) == 0, \
        capsys.readouterr().err
    config = Config.load(run / "config.json")
    assert (config.free_nats, config.kl_balance, config.plan_warm_start) == (3.0, 0.5, False)  # the paper's
    assert (config.batch_size, config.seq_len, config.candidates) == (4, 6, 16)  # --set's


def test_progress_bars_only_on_a_terminal_and_a_log_file_gets_one_plain_line_per_iteration(tmp_path, monkeypatch,
                                                                                         capsys):
    import sys

    run = tmp_path / "run"
    small = ["--preset", "smoke", "--run-dir", str(run), "--set", "eval_every=100"]
    assert cli(["train", *small, "--iterations", "1"]) == 0  # pytest's streams are no terminal, as a log file
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out
    assert any(line.startswith("iter    1/1") for line in captured.out.splitlines()), captured.out
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli(["train", "--run-dir", str(run), "--iterations", "2"]) == 0
    assert "\r" in capsys.readouterr().err  # a terminal gets the bars


def test_where_the_free_nats_hold_the_kl_term_up_the_iteration_line_and_info_give_the_kl_itself(tmp_path, capsys):
    from planet_colab.train import read_metrics

    held, free = tmp_path / "held", tmp_path / "free"
    assert cli(["train", "--preset", "smoke", "--run-dir", str(held), *SMALL, "free_nats=50"]) == 0
    assert cli(["info", "--run-dir", str(held)]) == 0
    out = capsys.readouterr().out
    row = read_metrics(held)[-1]
    # The loss term is the clamp's 50; the KL under it gets no gradient, and the line says how far under it is.
    assert row["kl_loss"] == 50.0 and 0.0 < row["kl"] < 50.0
    assert out.count(f"[KL {row['kl']:.2f}]") == 2  # the iteration line and info's "last"
    assert cli(["train", "--preset", "smoke", "--run-dir", str(free), *SMALL, "free_nats=0"]) == 0
    out = capsys.readouterr().out
    row = read_metrics(free)[-1]
    assert row["kl_loss"] == pytest.approx(row["kl"]) and "[KL" not in out
