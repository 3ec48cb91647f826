"""A stop (Ctrl-C, Colab's Stop, SIGTERM) at any instant: during a checkpoint write it still saves (or keeps
the previous checkpoint), during start-up it exits 130 with its one line, never -2 or a traceback; a
trainer started with SIGINT ignored (a script's background job) still stops on `kill -INT`."""

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from run_checks import final_weights, subprocess_env

from planet_colab import safeio, stop_signals
from planet_colab.__main__ import main
from planet_colab.checkpoint import INDEX_NAME, load_checkpoint, save_checkpoint
from planet_colab.config import get_config

ROOT = Path(__file__).resolve().parents[1]
ITERATIONS = 2
ARGS = ["train", "--preset", "smoke", "--iterations", str(ITERATIONS), "--no-progress",
        "--set", "checkpoint_every=1", "eval_every=2"]
STARTUP_STOP = "Stopped; nothing was lost. Run the same command to resume."


def _count_checkpoint_writes(patch, on_write=None) -> list[int]:
    """Count the zip writer's write calls of each checkpoint; `on_write(checkpoint, call)` runs before each."""
    counts: list[int] = []
    real = safeio._HashingWriter.write

    def write(self, data):
        if "ckpt_" in os.path.basename(getattr(self.f, "name", "")):
            if not getattr(self, "counted", False):  # a new checkpoint (or a new try of one)
                self.counted = True
                counts.append(0)
            counts[-1] += 1
            if on_write is not None:
                on_write(len(counts), counts[-1])
        return real(self, data)

    patch(safeio._HashingWriter, "write", write)
    return counts


@pytest.fixture(scope="module")
def calm_run(tmp_path_factory) -> tuple[Path, list[int]]:
    """An uninterrupted run, and how many write calls each of its checkpoints took."""
    run_dir = tmp_path_factory.mktemp("calm")
    with pytest.MonkeyPatch.context() as mp:
        counts = _count_checkpoint_writes(mp.setattr)
        assert main([*ARGS, "--run-dir", str(run_dir)]) == 0
    assert len(counts) == ITERATIONS and min(counts) > 3, counts
    return run_dir, counts


def _at(where: str, writes: int) -> int:
    return {"first": 1, "middle": writes // 2, "last": writes}[where]


@pytest.mark.parametrize("stop_signal, where", [(signal.SIGTERM, "first"), (signal.SIGINT, "middle"),
                                               (signal.SIGTERM, "last")],
                         ids=["SIGTERM-first", "SIGINT-middle", "SIGTERM-last"])
def test_a_stop_during_a_checkpoint_write_saves_it_then_exits_130_with_one_line(tmp_path, monkeypatch, capsys,
                                                                               calm_run, stop_signal, where):
    calm_dir, counts = calm_run

    def stop(checkpoint: int, call: int) -> None:
        if checkpoint == 1 and call == _at(where, counts[0]):
            os.kill(os.getpid(), stop_signal)

    _count_checkpoint_writes(monkeypatch.setattr, stop)
    assert main([*ARGS, "--run-dir", str(tmp_path)]) == 130
    monkeypatch.undo()
    out, err = capsys.readouterr()
    stopped = [line for line in (out + err).splitlines() if "Stopped" in line]
    assert stopped == ["Stopped: the newest checkpoint is after iteration 1; run again to resume."], out + err
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # listed in the index, hash verified: the write was whole
        assert load_checkpoint(tmp_path)["iteration"] == 0

    assert main([*ARGS, "--run-dir", str(tmp_path)]) == 0
    mine, calm = final_weights(tmp_path, ITERATIONS), final_weights(calm_dir, ITERATIONS)
    assert all(torch.equal(mine[k], calm[k]) for k in calm)


class _StopsWhileClosing:
    """An object whose finaliser is where a stop lands (numpy's NpzFile closing an episode file, say)."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10_000))  # the handler runs here, and Python drops what it raises inside a finaliser


def _stop_in_a_finaliser_at_iteration_2(monkeypatch) -> list[int]:
    """Make the second iteration drop a _StopsWhileClosing before it trains; returns where it was dropped."""
    import planet_colab.train as train_module

    real, finalised = train_module.train_iteration, []

    def train_iteration(state, dataset, config, iteration, on_step):
        if iteration == 1:
            _StopsWhileClosing()  # dropped at once: its finaliser swallows the KeyboardInterrupt
            finalised.append(iteration)
        return real(state, dataset, config, iteration, on_step)

    monkeypatch.setattr(train_module, "train_iteration", train_iteration)
    return finalised


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_stop_that_lands_in_a_finaliser_still_stops_at_the_next_step(tmp_path, monkeypatch, capsys):
    finalised = _stop_in_a_finaliser_at_iteration_2(monkeypatch)
    assert main([*ARGS, "--iterations", "3", "--run-dir", str(tmp_path)]) == 130
    out, err = capsys.readouterr()
    stopped = [line for line in (out + err).splitlines() if "Stopped" in line]
    assert finalised == [1] and stopped == [
        "Stopped: the newest checkpoint is after iteration 1; run again to resume."], out + err
    monkeypatch.undo()  # the stop ended with its command: the next one runs to the end
    assert main([*ARGS, "--iterations", "3", "--run-dir", str(tmp_path)]) == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_notebooks_stop_that_lands_in_a_finaliser_still_stops_and_saves(tmp_path, monkeypatch, capsys):
    # A notebook cell (and pytest) runs with Python's own SIGINT handler, which Colab's Stop button reaches.
    import planet_colab.train as train_module
    from planet_colab.stop_request import check_stop

    _stop_in_a_finaliser_at_iteration_2(monkeypatch)
    config = get_config("smoke", total_iterations=3, checkpoint_every=1, eval_every=2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        train_module.train_planner(config, tmp_path, progress=False)
    assert "Stopped: the newest checkpoint is after iteration 1" in capsys.readouterr().out
    assert load_checkpoint(tmp_path)["iteration"] == 0
    # The cell is over: Python's handler is back and nothing is left to stop the next cell.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    check_stop()


def _save(run_dir: Path, iteration: int) -> None:
    torch.manual_seed(iteration)
    model = torch.nn.Linear(64, 64)
    save_checkpoint(model, torch.optim.Adam(model.parameters()), iteration, get_config("smoke"), run_dir,
                    episodes=iteration + 1, metrics=[])


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_stop_raised_inside_the_zip_writer_stays_a_stop_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch,
                                                                                             where):
    # What a stop looks like when nothing defers it (Ray's cancel raises it from another thread): torch's
    # zip writer, cut short, fails on its own clean-up; that error must not replace the stop.
    _save(tmp_path, 9)
    with pytest.MonkeyPatch.context() as mp:
        counts = _count_checkpoint_writes(mp.setattr)
        _save(tmp_path / "calm", 19)

    def stop(checkpoint: int, call: int) -> None:
        if call == _at(where, counts[0]):
            raise KeyboardInterrupt

    _count_checkpoint_writes(monkeypatch.setattr, stop)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 19)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["ckpt_000009.pt", INDEX_NAME]  # no temporary left
    assert load_checkpoint(tmp_path)["iteration"] == 9


def test_a_second_stop_while_the_first_one_saves_still_saves(tmp_path, monkeypatch):
    _save(tmp_path, 9)

    def stop(checkpoint: int, call: int) -> None:
        if call in (1, 2):
            os.kill(os.getpid(), signal.SIGINT)  # pressed twice

    _count_checkpoint_writes(monkeypatch.setattr, stop)
    with pytest.raises(KeyboardInterrupt), stop_signals.stops_raise(), stop_signals.stops_deferred():
        _save(tmp_path, 19)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)["iteration"] == 19


def _launch(*head: str, **popen: object) -> subprocess.Popen:
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))
    return subprocess.Popen([sys.executable, "-m", *head], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize("kind, where", [
    ("SIGTERM-at-import", "torch"),  # before the command line can report a stop: held until it can
    ("SIGINT-at-import", "gymnasium"),
    # Inside code that an import exec()s from source text (a dataclass's __init__): CPython remembers
    # such a KeyboardInterrupt and used to kill the process with SIGINT after main returned 130.
    ("SIGINT-at-import", "planet_colab.run+exec"),
    ("SIGTERM-at-import", "planet_colab.train+exec"),
])
def test_a_stop_at_any_instant_of_start_up_exits_130_with_one_line(tmp_path, kind, where):
    proc = _launch("fault_launcher", kind, where, "--", *ARGS, "--run-dir", str(tmp_path))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert err.strip() == STARTUP_STOP, err


def test_a_trainer_started_with_sigint_ignored_still_stops_on_kill_int(tmp_path):
    # `python -m planet_colab train … &` in a script: the shell starts the job with SIGINT ignored.
    proc = _launch("fault_launcher", "slow", "100", "--", *ARGS, "--iterations", "50", "--run-dir", str(tmp_path),
                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    for line in proc.stdout:
        if line.startswith("iter    1/"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, (proc.returncode, out, err)
    stopped = [line for line in (out + err).splitlines() if line.startswith("Stopped")]
    assert "Traceback" not in err and len(stopped) == 1 and "checkpoint" in stopped[0], out + err
