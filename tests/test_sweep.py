"""The sweep: bad input refused up front, a 2-preset × 2-seed grid through local Ray, a rerun that
skips finished runs, and Ray workers SIGKILLed mid-run whose runs still end bit for bit as uninterrupted."""

import dataclasses
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from run_checks import assert_same_run, final_weights, subprocess_env
from skip_reasons import SWEEP_EXTRA

from planet_colab import config as config_module
from planet_colab.__main__ import main
from planet_colab.config import Config, get_config
from planet_colab.storage import EpisodeStorage
from planet_colab.sweep import plan_sweep, run_sweep
from planet_colab.train import train_planner

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).with_name("fault_launcher.py")
ITERATIONS = 4  # the smoke preset's own: checkpoints and evaluations after iterations 2 and 4
# A second preset just as fast, so the grid has two presets with different models.
SMOKE_B = {**config_module.PRESETS["smoke"], "cnn_depth": 8}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- bad input: one line each, nothing started, nothing written ------------------------------------
@pytest.fixture
def existing_root(tmp_path) -> Path:
    """A root holding one run's config, as a started sweep would have left it."""
    run_dir = tmp_path / "root" / "smoke" / "seed_0"
    run_dir.mkdir(parents=True)
    get_config("smoke", seed=0).save(run_dir / "config.json")
    return tmp_path / "root"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, message", [
    (["--presets", "nope", "--seeds", "0"], "unknown preset 'nope'; choose from:"),
    (["--presets", "smoke", "--seeds", "0", "1", "0"], "0 is listed twice in --seeds"),
    (["--presets", "smoke", "smoke", "--seeds", "0"], "smoke is listed twice in --presets"),
    (["--presets", "smoke", "--seeds", "2", "--address", "127.0.0.1:PORT"],
     "cannot reach a Ray cluster at 127.0.0.1:"),
    (["--presets", "smoke", "--seeds", "0", "1", "--cpus-per-run", "0"], "CPUs per run (--cpus-per-run) must be a positive integer"),
    (["--presets", "smoke", "--seeds", "2", "--local-cpus", "0"], "--local-cpus must be a positive integer"),
    (["--presets", "smoke", "--seeds", "2", "--address", "127.0.0.1:PORT", "--local-cpus", "1"],
     "--local-cpus applies only when Ray starts on this machine"),
    (["--presets", "smoke", "--seeds", "2", "--local-cpus", "1", "--cpus-per-run", "2"],
     "each run asks for 2 CPUs (--cpus-per-run), more than --local-cpus 1"),
    (["--presets", "smoke", "--seeds", "2", "--gpus-per-run", "0.5"],
     "asks for a GPU, but torch on this machine sees none"),
])
def test_bad_input_is_one_line_and_touches_nothing(existing_root, capsys, args, message):
    if "--address" in args or "--gpus-per-run" in args:
        pytest.importorskip("ray", reason=SWEEP_EXTRA)
    if "--gpus-per-run" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    before = _files(existing_root)
    args = [a.replace("PORT", str(_closed_port())) for a in args]
    assert main(["sweep", "--root", str(existing_root), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert _files(existing_root) == before


def test_existing_run_with_another_config_is_refused(existing_root, capsys):
    """A root whose run was started with other settings: named, and left exactly as it was."""
    run_dir = existing_root / "smoke" / "seed_1"
    run_dir.mkdir()
    get_config("smoke", seed=1, cnn_depth=8).save(run_dir / "config.json")
    before = _files(existing_root)
    assert main(["sweep", "--root", str(existing_root), "--presets", "smoke", "--seeds", "0", "1"]) == 2
    err = capsys.readouterr().err
    assert "smoke/seed_1 holds a run with another config (cnn_depth: run has 8" in err, err
    assert err.count("\n") == 1
    assert _files(existing_root) == before


def test_a_damaged_config_or_a_root_under_a_file_is_one_line(existing_root, capsys):
    config = existing_root / "smoke" / "seed_0" / "config.json"
    config.write_text("{")  # a half-written hand edit
    assert main(["sweep", "--root", str(existing_root), "--presets", "smoke", "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count(str(config)) == 1 and "not valid JSON" in err and err.count("\n") == 1, err
    assert main(["sweep", "--root", str(config / "sub"), "--presets", "smoke", "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert f"cannot be made: {config} is a file, not a directory" in err and err.count("\n") == 1, err


def test_seeds_may_differ_in_when_they_checkpoint_but_not_in_what_they_learn(existing_root):
    run_dir = existing_root / "smoke" / "seed_0"
    get_config("smoke", seed=0, checkpoint_minutes=4.0, keep_checkpoints=5).save(run_dir / "config.json")
    (run,) = plan_sweep(existing_root, ["smoke"], [0], iterations=7)
    assert (run.config.checkpoint_minutes, run.config.keep_checkpoints, run.config.total_iterations) == (4.0, 5, 7)


def test_eval_every_applies_to_new_and_started_runs_and_changes_no_training(existing_root, tmp_path, capsys):
    # A benchmark evaluates less often to save machine time: it may, only because training does not move.
    runs = plan_sweep(existing_root, ["smoke"], [0, 1], eval_every=3)
    assert [(r.config.eval_every, r.saved) for r in runs] == [(3, False), (3, False)]
    assert main(["sweep", "--root", str(existing_root), "--presets", "smoke", "--seeds", "0",
                 "--eval-every", "0"]) == 2
    assert "--eval-every" in capsys.readouterr().err
    for every in (2, 3):  # the smoke preset evaluates after iterations 2 and 4, or after 3 and 4
        train_planner(get_config("smoke", seed=0, eval_every=every), tmp_path / f"every_{every}", progress=False)
    evaluated = [[row["iteration"] for row in map(json.loads, (tmp_path / f"every_{every}" / "metrics.jsonl")
                                                   .read_text().splitlines()) if "eval_mean" in row]
                 for every in (2, 3)]
    assert evaluated == [[1, 3], [2, 3]]
    assert_same_run(tmp_path / "every_3", tmp_path / "every_2", ITERATIONS)


def test_a_config_json_is_written_only_where_the_sweep_changes_it(existing_root):
    # Drive: a file is written once, never rewritten; a run's own config.json is its owner's record.
    from planet_colab.sweep import _save_configs

    same = existing_root / "smoke" / "seed_0" / "config.json"
    before = same.stat()
    lost = _mkdir(existing_root / "smoke" / "seed_1")  # config.json lost, a checkpoint kept
    runs = plan_sweep(existing_root, ["smoke"], [0, 1, 2])
    runs[1] = dataclasses.replace(runs[1], done=1)
    _save_configs(runs)
    assert (same.stat().st_mtime_ns, same.stat().st_ino) == (before.st_mtime_ns, before.st_ino)
    assert not (lost / "config.json").exists()  # its trainer recovers it from the checkpoint, checked
    assert Config.load(existing_root / "smoke" / "seed_2" / "config.json") == get_config("smoke", seed=2)
    _save_configs(plan_sweep(existing_root, ["smoke"], [0], iterations=9))  # a new length is saved
    assert Config.load(same).total_iterations == 9


def test_without_ray_the_error_names_the_install_command(existing_root, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["sweep", "--root", str(existing_root), "--presets", "smoke", "--seeds", "1"]) == 2
    assert 'pip install -e ".[sweep]"' in capsys.readouterr().err
    assert not (existing_root / "smoke" / "seed_1").exists()


# ---- a grid through local Ray, with workers SIGKILLed mid-run ------------------------------------
# smoke/seed_1 dies inside its second checkpoint's write (iteration 4), smoke_b/seed_0 inside the
# write of its fifth episode (iteration 3's): both after their first checkpoint, so Ray's retry
# resumes from it. The other two runs are never touched.
FAULTS = "checkpoint:2:smoke/seed_1,episode:5:smoke_b/seed_0"
KILLED = (("smoke", 1), ("smoke_b", 0))


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, str, Path]:
    """`sweep --presets smoke smoke_b --seeds 0 1` through local Ray, two workers killed: (root, output, marks)."""
    pytest.importorskip("ray", reason=SWEEP_EXTRA)
    tmp = tmp_path_factory.mktemp("sweep")
    root, marks = tmp / "root", tmp / "marks"
    marks.mkdir()
    cmd = [sys.executable, str(LAUNCHER), "ray-workers", str(marks), FAULTS, "--", "sweep",
           "--root", str(root), "--presets", "smoke", "smoke_b", "--seeds", "0", "1",
           "--cpus-per-run", "1"]
    env = subprocess_env(PLANET_COLAB_TEST_PRESETS=json.dumps({"smoke_b": SMOKE_B}))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return root, out, marks


@pytest.fixture
def smoke_b(monkeypatch):
    monkeypatch.setitem(config_module.PRESETS, "smoke_b", SMOKE_B)


def test_two_presets_by_two_seeds_all_finish_with_a_line_per_iteration(swept):
    root, out, marks = swept
    assert sorted(p.name for p in marks.iterdir()) == ["fault_0", "fault_1"], f"a kill missed:\n{out}"
    assert "Sweep: 4 of 4 runs finished" in out, out
    for preset in ("smoke", "smoke_b"):
        for seed in (0, 1):
            run_dir = root / preset / f"seed_{seed}"
            storage = EpisodeStorage(run_dir / "episodes")
            assert storage.num_episodes == 2 + ITERATIONS  # none lost, none collected twice
            assert [p.name for p in storage.episode_paths] == [
                f"episode_{i:06d}.npz" for i in range(1, 3 + ITERATIONS)]
            assert not any((run_dir / "quarantine").glob("*")), "a file was quarantined"
            for it in range(1, ITERATIONS + 1):
                assert re.search(rf"\({preset}/seed_{seed} pid=\d+\) iter +{it}/{ITERATIONS} ", out), out
            resumed = re.search(rf"\({preset}/seed_{seed} pid=\d+\) Resumed from checkpoint after "
                                "iteration 2 ", out)
            assert bool(resumed) == ((preset, seed) in KILLED), out
            # Ray's retry took the dead worker's owner lease over at once (same machine, pid gone).
            took_over = re.search(rf"\({preset}/seed_{seed} pid=\d+\) Took over .* from pid \d+ on this "
                                  r"machine \(its process is no longer running\)", out)
            assert bool(took_over) == ((preset, seed) in KILLED), out
    assert final_weights(root / "smoke" / "seed_0", ITERATIONS)["encoder.0.weight"].shape[0] == 4
    assert final_weights(root / "smoke_b" / "seed_0", ITERATIONS)["encoder.0.weight"].shape[0] == 8


def test_each_run_trains_in_a_worker_process_of_its_own(swept):
    _, out, _ = swept
    pids = {}  # run → the worker processes its lines came from (a killed run's retry adds one)
    for run, pid in re.findall(r"\((smoke(?:_b)?/seed_\d) pid=(\d+)\)", out):
        pids.setdefault(run, set()).add(pid)
    assert len(pids) == 4, out
    runs = sorted(pids)
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            assert not pids[a] & pids[b], f"{a} and {b} shared a worker process:\n{out}"


def test_killed_runs_end_bit_for_bit_like_uninterrupted_train_runs(swept, tmp_path, smoke_b):
    root = swept[0]
    for preset, seed in KILLED:
        reference = tmp_path / f"{preset}_{seed}"
        train_planner(get_config(preset, seed=seed), reference, progress=False)
        assert_same_run(root / preset / f"seed_{seed}", reference, ITERATIONS)


def test_running_the_same_sweep_again_skips_finished_runs(swept, monkeypatch, smoke_b):
    import planet_colab.sweep as sweep

    root = swept[0]
    monkeypatch.setattr(sweep, "connect", lambda *a, **k: pytest.fail("Ray was started"))
    before = _files(root)
    lines = []
    outcomes = run_sweep(root, ["smoke", "smoke_b"], [0, 1], say=lines.append)
    assert set(outcomes.values()) == {"skipped"} and len(outcomes) == 4
    assert "smoke_b/seed_1: finished (4 of 4 iterations), skipped" in lines
    assert _files(root) == before
    # A longer sweep over the same root resumes them instead (planned only here).
    assert {r.done for r in plan_sweep(root, ["smoke"], [0, 1], iterations=6)} == {ITERATIONS}
    # A shorter one is refused, as `train` refuses it, instead of calling the runs "finished (4 of 3)".
    with pytest.raises(ValueError, match=f"already checkpointed {ITERATIONS} iterations, more than --iterations 3"):
        plan_sweep(root, ["smoke"], [0, 1], iterations=3)


def test_report_compares_the_sweeps_presets_across_seeds(swept, capsys):
    root = swept[0]
    assert main(["sweep-report", "--root", str(root)]) == 0
    summary = json.loads((root / "report" / "sweep.json").read_text())
    assert sorted(summary["presets"]) == ["smoke", "smoke_b"]
    for preset, data in summary["presets"].items():
        evals = {}
        for seed in (0, 1):
            rows = [json.loads(line) for line in (root / preset / f"seed_{seed}" / "metrics.jsonl")
                    .read_text().splitlines()]
            for row in rows:
                if "eval_mean" in row:
                    evals.setdefault(row["episodes"], []).append(row["eval_mean"])
        assert [c["episodes"] for c in data["curve"]] == [4, 6]
        for point in data["curve"]:
            assert point["seeds"] == 2
            assert point["mean"] == pytest.approx(np.mean(evals[point["episodes"]]))
            assert point["std"] == pytest.approx(np.std(evals[point["episodes"]]))
    if importlib.util.find_spec("tensorboard") is not None:  # the sweep extra installs it
        assert len(list((root / "tensorboard").rglob("*tfevents*"))) == 4


# ---- a retried run and the owner lease --------------------------------------------------------------
def _lease(run_dir: Path, host: str, pid: int, heartbeat_at: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "owner.json").write_text(json.dumps(
        {"token": "someone-else", "host": host, "pid": pid, "started_at": heartbeat_at,
         "heartbeat_at": heartbeat_at}))


def test_a_run_lost_with_another_machine_waits_for_its_lease_to_lapse(tmp_path, capfd):
    """Ray retries a run whose node died elsewhere: its lease is stale soon, and the retry gets in then."""
    from planet_colab.lease import STALE_AFTER_S
    from planet_colab.sweep_task import train_run

    run_dir = tmp_path / "smoke" / "seed_0"
    _lease(run_dir, "a-lost-node", 4242, time.time() - STALE_AFTER_S + 2.0)
    config = get_config("smoke", seed=0, total_iterations=1)
    t0 = time.monotonic()
    assert train_run(config.to_dict(), str(run_dir), 1) == {"iterations": 1}
    assert time.monotonic() - t0 >= 2.0
    out = capfd.readouterr().out
    assert re.search(r"Waiting [0-3] s for the lease of another machine to lapse", out), out
    assert "Took over" in out and "a-lost-node" in out


def test_a_run_waiting_for_a_lost_machines_lease_stops_when_its_sweep_does(tmp_path, capfd):
    """Stopping a sweep does not sit out a retried run's wait for a lapse (up to 3 minutes): its run stays as it was."""
    import threading

    from planet_colab.sweep_task import train_run

    run_dir, stop_file = tmp_path / "smoke" / "seed_0", tmp_path / ".stop_sweep_test"
    _lease(run_dir, "a-lost-node", 4242, time.time())
    lease_before = (run_dir / "owner.json").read_text()
    config = get_config("smoke", seed=0, total_iterations=1)
    threading.Timer(1.0, stop_file.write_text, args=("",)).start()
    t0 = time.monotonic()
    assert train_run(config.to_dict(), str(run_dir), 1, stop_file=str(stop_file)) == {"stopped": True}
    assert time.monotonic() - t0 < 30  # the watcher's 1 s and the wait's 5 s poll, not the lapse's 3 minutes
    assert "Waiting" in capfd.readouterr().out
    assert (run_dir / "owner.json").read_text() == lease_before and not (run_dir / "episodes").exists()


def test_a_run_held_by_a_live_trainer_here_fails_at_once_saying_who(tmp_path):
    from planet_colab.lease import RunInUseError
    from planet_colab.sweep_task import train_run

    run_dir = tmp_path / "smoke" / "seed_0"
    _lease(run_dir, socket.gethostname(), os.getppid(), time.time())
    config = get_config("smoke", seed=0, total_iterations=1)
    with pytest.raises(RunInUseError, match=f"in use by pid {os.getppid()} on this machine"):
        train_run(config.to_dict(), str(run_dir), 1)
    assert not (run_dir / "episodes").exists()


def test_local_cpus_caps_the_ray_started_here_and_its_runs_are_not_niced(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason=SWEEP_EXTRA)
    from planet_colab import sweep

    seen, real_connect = {}, sweep.connect

    def connect_and_stop(address, num_cpus=None):
        real_connect(address, num_cpus=num_cpus)
        seen["cpus"] = ray.cluster_resources().get("CPU")
        # Ray's default nice 15 starves a run beside any other busy process.
        seen["nice"] = ray.get(ray.remote(lambda: os.nice(0)).remote())
        ray.shutdown()
        raise KeyboardInterrupt  # stop before any run starts: the cap is what this test is about

    monkeypatch.setattr(sweep, "connect", connect_and_stop)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tmp_path, ["smoke"], [0], local_cpus=1, say=lambda line: None)
    assert seen["cpus"] == 1 and seen["nice"] == os.nice(0)
    assert not (tmp_path / "smoke").exists()


def test_runs_queued_behind_others_are_reported_as_not_started(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason=SWEEP_EXTRA)
    from planet_colab import sweep
    from planet_colab.sweep_report import format_markdown, summarize

    seen = {}

    def report_and_stop(ray, refs, say):
        seen["page"] = format_markdown(summarize(tmp_path))
        raise KeyboardInterrupt  # what the report shows the moment the runs are handed to Ray

    monkeypatch.setattr(sweep, "_wait_all", report_and_stop)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # seed_1 and seed_2 were stopped before their first iteration by an earlier, shorter sweep; a
    # trainer that is still alive holds seed_2.
    for seed in (1, 2):
        get_config("smoke", seed=seed, total_iterations=1).save(_mkdir(tmp_path / "smoke" / f"seed_{seed}") / "config.json")
    held = tmp_path / "smoke" / "seed_2"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (held / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": alive.pid, "token": "t",
                                                     "started_at": time.time(), "heartbeat_at": time.time()}))
        said = []
        with pytest.raises(KeyboardInterrupt):
            run_sweep(tmp_path, ["smoke"], [0, 1, 2], iterations=3, local_cpus=1, say=said.append)
    finally:
        alive.kill()
        alive.wait()
    page = seen["page"]
    assert "0 of 3 runs finished; no iteration yet: smoke/seed_0, smoke/seed_1, smoke/seed_2." in page
    assert "| smoke/seed_1 | 0 of 3 |" in page  # queued at the length this sweep asked for
    assert "| smoke/seed_2 | 0 of 1 |" in page  # its live trainer's to change, not the sweep's
    assert any(line.startswith("Started 3 runs (1 CPU each; 1 at a time, the others queued)") for line in said)


def test_a_sweep_deletes_stop_files_left_by_killed_sweeps_but_not_one_of_a_sweep_stopping_now(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason=SWEEP_EXTRA)
    from planet_colab import sweep

    left, stopping = tmp_path / ".stop_sweep_0123456789ab", tmp_path / ".stop_sweep_ba9876543210"
    for path in (left, stopping):
        path.write_text("stopped\n")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(left, (two_days_ago, two_days_ago))  # its sweep was SIGKILLed and never deleted it

    def no_ray_needed(*args, **kwargs):
        raise RuntimeError("the test ends here")

    monkeypatch.setattr(sweep, "connect", no_ray_needed)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(RuntimeError, match="the test ends here"):
        run_sweep(tmp_path, ["smoke"], [0], iterations=1)
    assert not left.exists() and stopping.exists()


def test_ctrl_c_again_while_the_runs_save_ends_them_at_once_and_says_what_that_loses(tmp_path):
    from planet_colab import sweep

    class ImpatientRay:
        def wait(self, refs, num_returns, timeout):
            raise KeyboardInterrupt  # the second Ctrl-C, while the runs are still saving

    said = []
    stop_file = tmp_path / ".stop_sweep_0123456789ab"
    sweep._stop(ImpatientRay(), {}, stop_file, said.append)  # returns: the sweep then says "Stopped; …" once
    assert stop_file.exists()  # the runs had been asked first
    assert "Ctrl-C again ends them at once" in said[0]
    assert said[-1] == "Ending the runs at once: a run that had not saved yet loses its unfinished iteration"


def test_sigterm_to_the_sweep_stops_the_runs_going_and_saves_each_like_ctrl_c(tmp_path):
    """Two runs at once and one queued. ray.init installs a SIGTERM handler that aborts the driver (exit
    134): the sweep puts the CLI's back. Ray's own cancel left both runs going (stop_request.py)."""
    pytest.importorskip("ray", reason=SWEEP_EXTRA)
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "planet_colab", "sweep", "--root", str(root), "--presets", "smoke",
           "--seeds", "0", "1", "2", "--iterations", "40", "--local-cpus", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines, going = [], set()
    for line in proc.stdout:
        lines.append(line)
        going |= set(re.findall(r"\((smoke/seed_\d) pid=\d+\) iter    3/40", line))
        if len(going) == 2:
            break
    proc.send_signal(signal.SIGTERM)
    out = "".join(lines) + proc.communicate(timeout=240)[0]
    assert proc.returncode == 130, out
    assert "Stopped; run the same sweep again to resume." in out
    for name in sorted(going):
        assert re.search(rf"\({name} pid=\d+\) Stopped: ", out), out
        assert f"({name} pid=" in out and not re.search(rf"\({name} pid=\d+\) Done: ", out), out
        assert (root / name / "checkpoints" / "latest.json").exists()
    (queued,) = {"smoke/seed_0", "smoke/seed_1", "smoke/seed_2"} - going
    assert not (root / queued / "episodes").exists()  # it never started, and a stopped sweep does not start it
    assert not list(root.glob(".stop_sweep_*"))  # the stop file is gone once the runs have stopped
