"""The online loop: exact resume, missing episodes, skipped steps, one owner, checkpoint on Stop, the CLI."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from run_checks import subprocess_env

import planet_colab.train as train
from planet_colab.__main__ import main as cli
from planet_colab.checkpoint import load_checkpoint
from planet_colab.config import get_config
from planet_colab.run import Run
from planet_colab.storage import DamagedEpisodeWarning, EpisodeStorage
from planet_colab.stop_request import StopRequested, clear_stop_request, request_stop

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize("where", ["gradient step", "environment step"])
def test_a_requested_stop_ends_the_loop_at_its_next_step_and_saves_like_ctrl_c(tmp_path, monkeypatch, where):
    """How a sweep stops its runs (stop_request.py): mid-iteration 3, iterations 1 and 2 are kept."""
    config = smoke(total_iterations=4, checkpoint_every=100)
    if where == "gradient step":
        real_step, calls = train.train_step, {"n": 0}

        def step(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == config.train_steps * 2 + 2:  # inside the third iteration's training
                request_stop()
            return real_step(*args, **kwargs)

        monkeypatch.setattr(train, "train_step", step)
    else:
        real_make = train.make_env_from_config

        def make(cfg):
            env, calls = real_make(cfg), {"n": 0}
            real_env_step = env.step

            def env_step(action):
                calls["n"] += 1
                if calls["n"] == cfg.episode_len * 2 + 3:  # inside the third iteration's collected episode
                    request_stop()
                return real_env_step(action)

            env.step = env_step
            return env

        monkeypatch.setattr(train, "make_env_from_config", make)
    try:
        with pytest.raises(StopRequested):
            train.train_planner(config, tmp_path, progress=False)
    finally:
        clear_stop_request()
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)["iteration"] == 1
    assert [r["iteration"] for r in train.read_metrics(tmp_path)] == [0, 1]
    assert EpisodeStorage(tmp_path / "episodes").num_episodes == 2 + 2  # the cut episode was not stored
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


# ------------------------------------------------------------------ episodes by number

def test_a_quarantined_seed_episode_is_collected_again_exactly(tmp_path):
    config = smoke(total_iterations=4)

    def damage(row):
        if row["iteration"] == 1:  # a half-synced file, found at iteration 2's load
            (tmp_path / "run" / "episodes" / "episode_000001.npz").write_bytes(b"not an npz")

    with pytest.warns(DamagedEpisodeWarning):
        result = train.train_planner(config, tmp_path / "run", progress=False, callback=damage)
    whole = train.train_planner(config, tmp_path / "whole", progress=False)
    for key, value in _weights(whole).items():
        assert torch.equal(value, result["model"].state_dict()[key]), key
    assert (tmp_path / "run" / "quarantine" / "episode_000001.npz").read_bytes() == b"not an npz"
    assert result["metrics"][2]["recollected_episodes"] == [1]


def test_every_seed_episode_damaged_before_the_first_checkpoint_is_collected_again_exactly(tmp_path):
    # Iteration 0 trains on the seed episodes alone: with all of them damaged, nothing loads at first.
    config = smoke(total_iterations=2)
    Run.open(tmp_path / "run", config=config).collect_seed_episodes(progress=False)
    for number in (1, 2):
        (tmp_path / "run" / "episodes" / f"episode_{number:06d}.npz").write_bytes(b"not an npz")
    with pytest.warns(DamagedEpisodeWarning):
        result = train.train_planner(config, tmp_path / "run", progress=False)
    whole = train.train_planner(config, tmp_path / "whole", progress=False)
    for key, value in _weights(whole).items():
        assert torch.equal(value, result["model"].state_dict()[key]), key
    assert sorted(os.listdir(tmp_path / "run" / "quarantine")) == ["episode_000001.npz", "episode_000002.npz"]
    assert result["metrics"][0]["recollected_episodes"] == [1, 2]


def test_a_quarantined_collected_episode_is_left_out_and_said(tmp_path, capsys):
    def damage(row):
        if row["iteration"] == 1:
            (tmp_path / "episodes" / "episode_000003.npz").write_bytes(b"not an npz")

    with pytest.warns(DamagedEpisodeWarning):
        result = train.train_planner(smoke(total_iterations=4), tmp_path, progress=False, callback=damage)
    assert [r.get("missing_episodes") for r in result["metrics"]] == [None, None, [3], [3]]
    out = capsys.readouterr().out
    assert out.count("Episode(s) 3 missing") == 1 and "(without missing episode(s) 3)" in out
    assert sorted(p.name for p in (tmp_path / "episodes").iterdir()) == [
        f"episode_{n:06d}.npz" for n in (1, 2, 4, 5, 6)]


def test_an_episode_missing_before_a_resume_does_not_block_it(tmp_path, capsys):
    run = tmp_path / "run"
    train.train_planner(smoke(total_iterations=2, checkpoint_every=1), run, progress=False)
    (run / "episodes" / "episode_000004.npz").rename(tmp_path / "moved_by_hand.npz")
    result = train.train_planner(smoke(total_iterations=4, checkpoint_every=1), run, progress=False)
    assert result["start_iteration"] == 2
    assert [r.get("missing_episodes") for r in result["metrics"][2:]] == [[4], [4]]
    assert "Episode(s) 4 missing" in capsys.readouterr().out
    # Numbers are never reused: iterations 2 and 3 stored episodes 5 and 6.
    assert sorted(p.name for p in (run / "episodes").iterdir()) == [
        f"episode_{n:06d}.npz" for n in (1, 2, 3, 5, 6)]


def test_a_1e30_reward_is_quarantined_at_load_and_its_seed_episode_collected_again(tmp_path):
    config = smoke(total_iterations=3)
    whole = train.train_planner(config, tmp_path / "whole", progress=False)
    good = EpisodeStorage(tmp_path / "whole" / "episodes").load_episode(tmp_path / "whole" / "episodes" /
                                                                        "episode_000001.npz")
    (tmp_path / "run" / "episodes").mkdir(parents=True)
    with open(tmp_path / "run" / "episodes" / "episode_000001.npz", "wb") as f:  # written by other code
        np.savez_compressed(f, **{**good, "reward": good["reward"] * 0 + np.float32(1e30)})
    with pytest.warns(DamagedEpisodeWarning, match="1e\\+30"):
        result = train.train_planner(config, tmp_path / "run", progress=False)
    assert result["metrics"][0]["recollected_episodes"] == [1]
    for key, value in _weights(whole).items():
        assert torch.equal(value, result["model"].state_dict()[key]), key


def test_iterations_that_skip_every_step_are_flagged_and_the_run_stops_naming_the_cause(tmp_path, capsys):
    config = smoke(total_iterations=10, learning_rate=1e12)  # one step, and the weights are beyond fp32
    with pytest.warns(RuntimeWarning, match="non-finite"), \
            pytest.raises(train.TrainingStalled, match=r"largest \|reward\| .*learning_rate 1e\+12 too high"):
        train.train_planner(config, tmp_path, progress=False)
    rows = train.read_metrics(tmp_path)
    assert len(rows) == 4 and rows[0]["train_steps"] > 0
    assert all(r["train_steps"] == 0 and r["all_steps_skipped"] and math.isnan(r["loss"]) for r in rows[1:])
    out = capsys.readouterr().out
    assert out.count("ALL 3 TRAIN STEPS SKIPPED") == 3 and "loss     0.00" not in out


def test_an_encoder_that_went_silent_is_said_once_with_the_cure(tmp_path, capsys, monkeypatch):
    train.train_planner(smoke(total_iterations=4), tmp_path / "healthy", progress=False)
    assert "same embedding" not in capsys.readouterr().out
    from planet_colab.models import WorldModel

    built = WorldModel.__init__

    def silent(self, *args, **kwargs):
        built(self, *args, **kwargs)
        last = self.encoder[-2]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.constant_(last.bias, -1.0)  # its ReLU never positive: no gradient ever reaches it

    monkeypatch.setattr(WorldModel, "__init__", silent)
    train.train_planner(smoke(total_iterations=4), tmp_path / "dead", progress=False)
    out = capsys.readouterr().out
    assert all(r["embed_spread"] == 0 for r in train.read_metrics(tmp_path / "dead"))
    assert out.count("the encoder gives every frame the same embedding") == 1
    assert "--set encoder_activation=elu" in out
    lines = out.splitlines()  # after the second silent iteration, not the first (which may still be dying)
    said = next(i for i, line in enumerate(lines) if "same embedding" in line)
    assert sum(line.startswith("iter ") for line in lines[:said]) == 2


# ------------------------------------------------------------------ one owner, one line, exit codes

def _cli(*args: str, launcher: tuple[str, int] | None = None) -> subprocess.Popen:
    head = [sys.executable, "-m", "planet_colab"] if launcher is None else \
        [sys.executable, str(ROOT / "tests" / "fault_launcher.py"), launcher[0], str(launcher[1]), "--"]
    return subprocess.Popen([*head, *args], cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_trainers_started_together_one_refuses_and_the_run_is_one_trainers(tmp_path):
    args = ["train", "--run-dir", str(tmp_path / "run"), "--preset", "smoke", "--iterations", "6",
            "--no-progress", "--set", "eval_every=100"]
    procs = [_cli(*args, launcher=("slow", 500)) for _ in range(2)]  # busy long enough to overlap
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outs
    refused = outs[codes.index(2)][1].strip()
    assert len(refused.splitlines()) == 1 and "is in use by pid" in refused and "--take-over" in refused
    assert not (tmp_path / "run" / "owner.json").exists()  # released when done

    train.train_planner(smoke(total_iterations=6), tmp_path / "single", progress=False)
    mine, single = EpisodeStorage(tmp_path / "run" / "episodes"), EpisodeStorage(tmp_path / "single" / "episodes")
    assert [p.name for p in mine.episode_paths] == [p.name for p in single.episode_paths]
    for a, b in zip(mine.episode_paths, single.episode_paths):
        ea, eb = mine.load_episode(a), single.load_episode(b)
        assert all(np.array_equal(ea[k], eb[k]) for k in ("obs", "action", "reward", "terminal")), a.name
    actions = [mine.load_episode(p)["action"].tobytes() for p in mine.episode_paths]
    assert len(set(actions)) == len(actions)  # no episode is a copy of another


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_saves_then_prints_one_line_and_exits_130(tmp_path, stop_signal):
    # SIGTERM: `kill`, a job scheduler, a preempted cluster node — the same as Ctrl-C.
    proc = _cli("train", "--run-dir", str(tmp_path), "--preset", "smoke", "--iterations", "50",
                "--no-progress", "--set", "checkpoint_every=100", "eval_every=100", launcher=("slow", 100))
    for line in proc.stdout:
        if line.startswith("iter    2/"):
            break
    proc.send_signal(stop_signal)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    stopped = [line for line in (out + err).splitlines() if "Stopped" in line]
    assert len(stopped) == 1 and "saved a checkpoint after iteration" in stopped[0], out + err
    saved = load_checkpoint(tmp_path)
    assert saved is not None and saved["iteration"] >= 1, out + err  # the finished iterations are kept


@pytest.mark.parametrize("args, named", [
    (["--iterations", "x"], "argument --iterations"),
    (["--iterations", "0"], "argument --iterations"),
    (["--set", "batchsize=3"], "argument --set: Unknown config field 'batchsize'"),
    (["--set", "seq_len=1", "deter_dim=0"], "seq_len must be at least 2"),
    (["--preset", "tiny"], "argument --preset"),
])
def test_a_user_error_is_one_line_and_exit_code_2(tmp_path, capsys, args, named):
    assert cli(["train", "--run-dir", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and named in err, err
    assert not (tmp_path / "run").exists()


def test_a_trainer_that_lost_the_run_stops_before_its_next_write(tmp_path):
    from planet_colab.lease import LeaseLostError

    def taken_over(row):  # another runtime took the run over (e.g. with --take-over) after iteration 1
        if row["iteration"] == 0:
            now = time.time()
            (tmp_path / "owner.json").write_text(json.dumps(
                {"host": "colab-vm-2", "pid": 7, "token": "theirs", "started_at": now, "heartbeat_at": now}))

    with pytest.raises(LeaseLostError, match="taken over by pid 7 on host colab-vm-2"):
        train.train_planner(smoke(total_iterations=3), tmp_path, progress=False, callback=taken_over)
    assert EpisodeStorage(tmp_path / "episodes").num_episodes == 3  # iteration 2 stored nothing
    assert json.loads((tmp_path / "owner.json").read_text())["token"] == "theirs"


def test_stop_mid_iteration_saves_the_grad_scaler_state_of_the_snapshot(tmp_path):
    """fp16: the loss scale moves within an iteration; a Stop saves it as the snapshot's weights found it."""
    from types import SimpleNamespace

    class Scaler:  # GradScaler's interface as the Checkpointer uses it
        scale = 65536.0

        def state_dict(self):
            return {"scale": self.scale}

    class FakeRun:
        config = smoke()  # a checkpoint every 2 iterations: iteration 1 (0-based 0) is not saved at once

        def save_checkpoint(self, model, optimizer, iteration, metrics, extra=None):
            self.saved = iteration, extra, {k: v.clone() for k, v in model.state_dict().items()}

    model = torch.nn.Linear(2, 2)
    state = SimpleNamespace(model=model, optimizer=torch.optim.Adam(model.parameters()), scaler=Scaler(),
                            start_iteration=0)
    run, before = FakeRun(), {k: v.clone() for k, v in model.state_dict().items()}
    checkpoints = train.Checkpointer(run, state)
    checkpoints.begin(0)
    checkpoints.finish(0, [{"iteration": 0}])
    checkpoints.begin(1)
    state.scaler.scale = 32768.0  # an fp16 overflow in iteration 1's train steps halved it
    with torch.no_grad():
        model.weight.add_(1.0)
    checkpoints.save_on_stop([{"iteration": 0}])
    iteration, extra, weights = run.saved
    assert iteration == 0 and extra == {"scaler": {"scale": 65536.0}}
    assert all(torch.equal(weights[k], before[k]) for k in before)


def test_every_row_in_metrics_jsonl_has_its_checkpoint_time_threads_cpu_and_cpu_seconds(tmp_path):
    train.train_planner(smoke(total_iterations=2, checkpoint_every=1), tmp_path, progress=False)
    rows = train.read_metrics(tmp_path)
    assert [r["iteration"] for r in rows] == [0, 1]
    assert all(r["checkpoint_s"] > 0 for r in rows)  # both iterations were checkpointed, the last one too
    assert all(r["threads"] == torch.get_num_threads() == 1 for r in rows)  # what its seconds were measured with
    for r in rows:  # the work in process CPU seconds, by phase, beside the wall seconds
        phases = r["train_cpu_s"] + r["collect_cpu_s"] + r["eval_cpu_s"]
        assert r["train_cpu_s"] > 0 and r["collect_cpu_s"] > 0 and r["eval_cpu_s"] >= 0
        assert phases <= r["cpu_s"] + 1e-6
    from planet_colab.precision import SPEED_FLAGS, cpu_flags, cpu_model

    # and on which CPU (sweep-report's benchmark table names it beside the hours)
    assert all(r["cpu"] == cpu_model() and r["cpu_flags"] == [f for f in SPEED_FLAGS if f in cpu_flags()]
               and ("gpu" in r) == torch.cuda.is_available() for r in rows)


def test_the_command_line_says_a_finished_run_is_finished_and_prints_warnings_as_one_line(tmp_path, capsys):
    args = ["train", "--run-dir", str(tmp_path / "run"), "--preset", "smoke", "--iterations", "2", "--no-progress"]
    assert cli(args) == 0
    assert "Done: 2 iteration(s)" in capsys.readouterr().out
    assert cli(args) == 0
    assert "had already finished its 2 iteration(s); `--iterations N` (more than 2) trains it longer" \
        in capsys.readouterr().out

    # A damaged episode: the warning is one line, without the source line Python adds to it.
    episode = sorted((tmp_path / "run" / "episodes").glob("episode_*.npz"))[-1]
    episode.write_bytes(b"not an npz")
    more = subprocess.run([sys.executable, "-m", "planet_colab", *args[:-3], "--iterations", "3", "--no-progress"],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert more.returncode == 0, more.stderr
    warned = [line for line in more.stderr.splitlines() if "is damaged" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: ") and "moved to" in warned[0], more.stderr
    assert not any(line.startswith(" ") for line in more.stderr.splitlines()), more.stderr
