"""The online loop: exact resume, refusal of incompatible configs, checkpoint on Stop, the CLI."""

import json

import pytest
import torch

import planet_colab.train as train
from planet_colab.__main__ import main as cli
from planet_colab.checkpoint import load_checkpoint
from planet_colab.config import get_config
from planet_colab.storage import EpisodeStorage


def smoke(**overrides):
    return get_config("smoke", **{"eval_every": 100, **overrides})


def _weights(result) -> dict:
    return {k: v.clone() for k, v in result["model"].state_dict().items()}


def test_resumed_run_ends_bit_identical_to_uninterrupted(tmp_path):
    whole = train.train_planner(smoke(total_iterations=3), tmp_path / "whole", progress=False)
    train.train_planner(smoke(total_iterations=1, checkpoint_every=1), tmp_path / "split", progress=False)
    resumed = train.train_planner(smoke(total_iterations=3, checkpoint_every=1), tmp_path / "split",
                                  progress=False)
    assert resumed["start_iteration"] == 1
    for key, value in _weights(whole).items():
        assert torch.equal(value, resumed["model"].state_dict()[key]), key
    assert EpisodeStorage(tmp_path / "split" / "episodes").num_episodes == 2 + 3
    rows = train.read_metrics(tmp_path / "split")
    assert [r["iteration"] for r in rows] == [0, 1, 2]


def test_resume_with_changed_model_shape_is_refused_naming_the_field(tmp_path):
    train.train_planner(smoke(total_iterations=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"deter_dim: run has 16, you asked for 32"):
        train.train_planner(smoke(total_iterations=2, deter_dim=32), tmp_path, progress=False)


def test_changing_total_iterations_is_allowed(tmp_path):
    train.train_planner(smoke(total_iterations=1), tmp_path, progress=False)
    result = train.train_planner(smoke(total_iterations=2), tmp_path, progress=False)
    assert result["start_iteration"] == 1 and len(result["metrics"]) == 2


def test_stop_button_mid_iteration_saves_the_last_finished_iteration(tmp_path, monkeypatch):
    real_step, calls = train.train_step, {"n": 0}
    config = smoke(total_iterations=3, checkpoint_every=100)

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == config.train_steps * 2 + 1:  # first step of the third iteration
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.train_planner(config, tmp_path, progress=False)
    monkeypatch.setattr(train, "train_step", real_step)
    payload = load_checkpoint(tmp_path)
    assert payload["iteration"] == 1  # iterations 0 and 1 finished; 2 had started
    # …and what it saved is the state after iteration 1: resuming matches an uninterrupted run.
    resumed = train.train_planner(config, tmp_path, progress=False)
    whole = train.train_planner(config, tmp_path / "whole", progress=False)
    for key, value in _weights(whole).items():
        assert torch.equal(value, resumed["model"].state_dict()[key]), key


def test_cli_train_then_info_and_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "2",
                "--no-progress", "--set", "eval_every=100"]) == 0
    assert cli(["info", "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "episodes    4 stored" in out and "2 of 2 iterations checkpointed" in out
    # Counted as the training log counts; the file name's 0-based number is explained beside it.
    assert "ckpt_000001.pt (after iteration 2; file numbers count from 0)" in out
    assert "{" not in out  # a summary to read, not a JSON dump
    assert cli(["evaluate", "--run-dir", str(run), "--episodes", "2",
                "--video", str(tmp_path / "ep.gif")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert len(json.loads(last)["returns"]) == 2
    assert (tmp_path / "ep.gif").stat().st_size > 0


def test_cli_rejects_unknown_config_field(tmp_path, capsys):
    assert cli(["train", "--run-dir", str(tmp_path), "--preset", "smoke", "--set", "batchsize=3"]) == 2
    assert "Unknown config field 'batchsize'" in capsys.readouterr().err
