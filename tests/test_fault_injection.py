"""A run SIGKILLed at many instants and restarted each time ends exactly like an uninterrupted run."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_checks import assert_same_run, subprocess_env

from planet_colab.storage import EpisodeStorage

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).with_name("fault_launcher.py")
ITERATIONS = 30
TRAIN_ARGS = ["train", "--preset", "smoke", "--iterations", str(ITERATIONS), "--no-progress",
              "--set", "checkpoint_every=2", "eval_every=3"]


def _train(run_dir: Path, fault: tuple[str, int] | None = None) -> subprocess.Popen:
    args = [*TRAIN_ARGS, "--run-dir", str(run_dir)]
    if fault is None:
        cmd = [sys.executable, "-m", "planet_colab", *args]
    else:
        cmd = [sys.executable, str(LAUNCHER), fault[0], str(fault[1]), "--", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    proc = _train(run_dir)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return run_dir


def test_kills_at_random_instants_lose_nothing(tmp_path, reference_run):
    """SIGKILL during training, collection, episode and checkpoint writes; restart until done."""
    run_dir = tmp_path / "killed"
    rng = random.Random(1234)
    # Planted faults hit exact points early in each process (inside its first checkpoint write or
    # episode write, before its second train step); timed kills land wherever the run happens to be.
    # Each process gets at most an iteration or two before it dies, so the run outlasts the plan.
    plan = [("time", 0), ("checkpoint", 1), ("episode", 1), ("train_step", 2), ("time", 0),
            ("checkpoint", 1), ("time", 0), ("episode", 1)]
    killed, outcomes = 0, []
    for kind, n in plan:
        if kind == "time":
            proc = _train(run_dir)
            # Wait until the loop has started (imports take seconds), then kill at a random moment.
            for line in proc.stdout:
                if line.startswith(("Starting", "Resumed", "Done")):
                    break
            time.sleep(rng.uniform(0.1, 1.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=300)
        else:
            proc = _train(run_dir, (kind, n))
            out, _ = proc.communicate(timeout=300)
        outcomes.append((kind, proc.returncode))
        if proc.returncode == -signal.SIGKILL:
            killed += 1
        else:
            assert proc.returncode == 0, out
    print(f"{killed} of {len(plan)} kills landed: {outcomes}")
    assert killed >= 6, f"only {killed} kills landed: {outcomes}"

    proc = _train(run_dir)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out

    storage = EpisodeStorage(run_dir / "episodes")
    assert storage.num_episodes == 2 + ITERATIONS  # smoke: 2 seed episodes + one per iteration
    assert not any((run_dir / "quarantine").glob("*")), "a file was quarantined"
    assert_same_run(run_dir, reference_run, ITERATIONS)
