"""Torch threads: chosen with --threads (or the notebooks' THREADS), applied in the trainer, refused when < 1."""

import pytest
import torch

from planet_colab.__main__ import main as cli
from planet_colab.threads import apply_threads, available_cores, default_threads


def test_train_threads_option_is_what_the_trainer_runs_with(tmp_path):
    run = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "1", "--no-progress",
                "--threads", "2"]) == 0
    from planet_colab.run import read_metrics

    assert read_metrics(run)[0]["threads"] == 2  # torch.get_num_threads() inside the loop


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_zero_threads_is_refused_in_one_line(tmp_path, capsys, command):
    assert cli([command, "--run-dir", str(tmp_path / "run"), "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--threads" in err and "positive integer" in err
    assert not (tmp_path / "run").exists()


def test_train_planner_takes_threads_and_refuses_bad_ones(tmp_path):
    from planet_colab.config import get_config
    from planet_colab.train import train_planner

    rows = []
    train_planner(get_config("smoke", total_iterations=1), tmp_path / "run", progress=False, threads=2,
                  callback=lambda row: rows.append(torch.get_num_threads()))
    assert rows == [2]
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        train_planner(get_config("smoke"), tmp_path / "other", progress=False, threads=0)


def test_the_default_is_omp_num_threads_else_the_physical_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == available_cores()
    assert 1 <= available_cores() <= len(__import__("os").sched_getaffinity(0))
    assert apply_threads(1) == 1 and torch.get_num_threads() == 1
