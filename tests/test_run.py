"""A run directory's config is one truth: what resumes read, where accepted changes go, never mixed."""

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from run_checks import subprocess_env

from planet_colab.__main__ import main as cli
from planet_colab.config import Config, get_config
from planet_colab.safeio import QuarantineWarning

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).with_name("fault_launcher.py")
QUIET = ["--no-progress", "--set", "eval_every=100"]


def newest_checkpoint(run_dir: Path) -> dict:
    name = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["file"]
    return torch.load(run_dir / "checkpoints" / name, weights_only=True)


def stored(run_dir: Path) -> Config:
    return Config.load(run_dir / "config.json")


def test_open_prefers_the_runs_stored_config_and_refuses_another_preset(tmp_path):
    from planet_colab.run import Run
    from planet_colab.run_config import RunError

    assert Run.open(tmp_path / "new", changes={"learning_rate": 5e-4}).config.preset == "pendulum"
    assert not (tmp_path / "new").exists()  # opening writes nothing
    get_config("smoke", seed=7).save(tmp_path / "config.json")
    resumed = Run.open(tmp_path, changes={"total_iterations": 9}).config
    assert (resumed.preset, resumed.seed, resumed.total_iterations) == ("smoke", 7, 9)
    with pytest.raises(RunError, match="preset 'paper' does not match"):
        Run.open(tmp_path, "paper")


def test_an_explicit_preset_never_resets_what_the_run_was_started_with(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "1", "--set", "seed=5",
                "eval_every=100", "--no-progress"]) == 0
    capsys.readouterr()
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "2", *QUIET]) == 0
    out = capsys.readouterr().out
    assert "with its own config, not the defaults of preset 'smoke': seed=5 (preset: 0)" in out
    assert stored(run).seed == 5 and newest_checkpoint(run)["config"]["seed"] == 5
    assert cli(["train", "--run-dir", str(run), "--preset", "pendulum"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "preset 'pendulum' does not match" in err


def test_changes_on_resume_are_saved_and_a_new_learning_rate_reaches_adam(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "1", *QUIET]) == 0
    assert newest_checkpoint(run)["optimizer"]["param_groups"][0]["lr"] == 1e-3
    assert cli(["train", "--run-dir", str(run), "--iterations", "2", "--no-progress",
                "--set", "learning_rate=2e-4", "free_nats=2.5"]) == 0
    assert "learning_rate 0.001 -> 0.0002" in capsys.readouterr().out
    config = stored(run)
    assert (config.learning_rate, config.free_nats, config.total_iterations) == (2e-4, 2.5, 2)
    assert config.eval_every == 100  # what the first command set is kept
    payload = newest_checkpoint(run)
    assert payload["optimizer"]["param_groups"][0]["lr"] == 2e-4
    assert payload["config"]["learning_rate"] == 2e-4


def test_a_fixed_field_cannot_change_on_resume(tmp_path):
    from planet_colab.run import Run
    from planet_colab.run_config import ConfigMismatchError

    get_config("smoke", seed=3).save(tmp_path / "config.json")
    with pytest.raises(ConfigMismatchError, match="seed: run has 3, you asked for 4"):
        Run.open(tmp_path, changes={"seed": 4})
    with pytest.raises(ValueError, match="deter_dim: run has 16, you asked for 32"):
        Run.open(tmp_path, config=get_config("smoke", seed=3, deter_dim=32))


def test_a_bad_first_command_leaves_nothing_behind_and_the_corrected_one_works(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--set", "env_name=CartPole-v1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "env_name 'CartPole-v1'" in err and "Box" in err
    assert not run.exists()
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--set", "seq_len=1"]) == 2
    assert "seq_len must be at least 2" in capsys.readouterr().err
    assert not run.exists()
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "1", *QUIET]) == 0


@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_a_lost_config_is_recovered_from_the_newest_checkpoint(tmp_path, capsys, damage):
    run = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "2", *QUIET]) == 0
    if damage == "missing":
        (run / "config.json").unlink()
    else:
        (run / "config.json").write_text('{"preset": "smoke", "deter_dim": ')  # a half-synced file
    capsys.readouterr()
    with pytest.warns(QuarantineWarning) if damage == "damaged" else contextlib.nullcontext():
        assert cli(["train", "--run-dir", str(run), "--iterations", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Recovered the run's config from ckpt_000001.pt" in out and damage in out
    assert "Resumed from checkpoint after iteration 2 of 3" in out
    assert stored(run) == get_config("smoke", eval_every=100, total_iterations=3)
    if damage == "damaged":
        assert (run / "quarantine" / "config.json").read_text().startswith('{"preset"')


def test_raised_iterations_survive_a_kill(tmp_path):
    run = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "2", *QUIET]) == 0
    # Killed just before the 10th gradient step of this process: iterations 2, 3 and 4 are done.
    steps = get_config("smoke").train_steps
    killed = subprocess.run([sys.executable, str(LAUNCHER), "train_step", str(3 * steps + 1), "--", "train",
                             "--run-dir", str(run), "--iterations", "20", "--no-progress"],
                            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert stored(run).total_iterations == 20
    again = subprocess.run([sys.executable, "-m", "planet_colab", "train", "--run-dir", str(run), "--no-progress"],
                           cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "of 20" in again.stdout and "Done: 20 iteration(s)" in again.stdout
    assert [r["iteration"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] \
        == list(range(20))


def test_disk_and_drive_errors_are_one_line_with_their_own_exit_code(tmp_path, capsys, monkeypatch):
    import errno

    from planet_colab import safeio
    from planet_colab.run import Run

    (tmp_path / "a_file").write_text("")
    assert cli(["train", "--run-dir", str(tmp_path / "a_file" / "run"), "--preset", "smoke", *QUIET]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "a_file" / "run") in err and "[Errno" not in err

    def dropped(self, rows):  # what safeio raises once its retries are spent
        raise safeio.explain(OSError(errno.ENOTCONN, "Transport endpoint is not connected"),
                             self.run_dir / "metrics.jsonl", "write", tries=4)

    monkeypatch.setattr(Run, "write_metrics", dropped)
    assert cli(["train", "--run-dir", str(tmp_path / "run"), "--preset", "smoke", *QUIET]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: Could not write ") and "remount Drive" in err


def test_iterations_below_what_is_checkpointed_are_refused(tmp_path, capsys):
    from planet_colab.run import Run
    from planet_colab.run_config import RunError

    run = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "3",
                "--set", "checkpoint_every=1", "eval_every=100", "--no-progress"]) == 0
    capsys.readouterr()
    assert cli(["train", "--run-dir", str(run), "--iterations", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "below the 3 iterations" in err and "ckpt_000002.pt" in err
    assert stored(run).total_iterations == 3
    with pytest.raises(RunError, match="ask for 3 or more"):
        Run.open(run, changes={"total_iterations": 1})
    assert Run.open(run, changes={"total_iterations": 3}).config.total_iterations == 3


def test_a_run_cannot_be_relabelled_with_another_preset(tmp_path, capsys):
    from planet_colab.run import Run
    from planet_colab.run_config import ConfigMismatchError

    run = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "1", *QUIET]) == 0
    capsys.readouterr()
    assert cli(["train", "--run-dir", str(run), "--set", "preset=paper", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "argument --set: preset is not a setting" in err and "--preset" in err
    assert stored(run).preset == "smoke"
    for how in ({"changes": {"preset": "paper"}}, {"config": get_config("smoke", eval_every=100).replace(
            preset="paper")}):
        with pytest.raises(ConfigMismatchError, match="preset: run has 'smoke', you asked for 'paper'"):
            Run.open(run, **how)


def test_the_owner_removes_stale_temporaries_of_killed_writers_in_the_run_root(tmp_path):
    import os

    from planet_colab.run import Run

    get_config("smoke").save(tmp_path / "config.json")
    (tmp_path / "videos").mkdir()
    stale = [tmp_path / ".metrics.jsonl.tmp-1-0123abcd", tmp_path / ".config.json.tmp-1-0123abcd",
             tmp_path / ".owner.json.tmp-1-0123abcd", tmp_path / "videos" / ".ep.gif.tmp-1-0123abcd",
             tmp_path / "episodes" / ".episode_000001.npz.tmp-1-0123abcd"]
    (tmp_path / "episodes").mkdir()
    for path in stale:
        path.write_bytes(b"half")
        os.utime(path, (0, 0))
    young = tmp_path / ".metrics.jsonl.tmp-2-4567abcd"  # may be another process's write in progress
    young.write_bytes(b"half")
    run = Run.open(tmp_path)
    assert all(p.exists() for p in stale)  # opening (reading) removes nothing
    with run.own():
        pass
    assert not any(p.exists() for p in stale) and young.exists()


def test_seed_episodes_already_stored_are_skipped_while_a_trainer_holds_the_run(tmp_path):
    """Notebook 01 run again while 02 trains (or on a new runtime after a disconnect) must not be refused."""
    import time

    from planet_colab.lease import RunInUseError
    from planet_colab.run import Run

    config = get_config("smoke", seed_episodes=2)
    run = Run.open(tmp_path, config=config)
    assert run.collect_seed_episodes(progress=False) == [1, 2]
    (tmp_path / "owner.json").write_text(json.dumps(  # a live trainer on another machine
        {"token": "trainer", "host": "another-runtime", "pid": 1, "started_at": time.time(),
         "heartbeat_at": time.time()}))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert Run.open(tmp_path).collect_seed_episodes(progress=False) == []
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    (tmp_path / "episodes" / "episode_000002.npz").unlink()  # now there is something to write
    with pytest.raises(RunInUseError):
        Run.open(tmp_path).collect_seed_episodes(progress=False)
