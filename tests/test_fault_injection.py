"""A run SIGKILLed at many instants and restarted each time ends exactly like an uninterrupted run; so does one
driven through a seeded campaign of random faults of every kind (kills, stops, Drive drops, damaged files)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_launcher import DROP_CALLS, DROPS_ENV
from run_checks import assert_same_run, subprocess_env

from planet_colab.storage import EpisodeStorage

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).with_name("fault_launcher.py")
ITERATIONS = 30
TRAIN_ARGS = ["train", "--preset", "smoke", "--iterations", str(ITERATIONS), "--no-progress",
              "--set", "checkpoint_every=2", "eval_every=3"]
# The campaign: PLANET_FAULT_SEED=S replays campaign S (each run prints its seed); PLANET_FAULT_COUNT=N
# plants N faults (CI's default fits in about a minute and a half).
SEED_ENV, COUNT_ENV, CI_FAULTS = "PLANET_FAULT_SEED", "PLANET_FAULT_COUNT", 8
# Calls of a kind a faulted process makes, roughly (the exclusive create of its lease is its one link).
CALLS_PER_PROCESS = {"link": 1, "mkdir": 4, "truncate": 2, "unlink": 3}
DAMAGE = b"PK\x03\x04 not an episode any more"
FAULT_KINDS = ("SIGKILL", "SIGTERM", "SIGINT", "stop-in-write", "kill-at-rename", "stop-at-import")


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


def _campaign_iterations(faults: int) -> int:
    # Each faulted process gets an iteration or two: the run must outlast the campaign.
    return max(ITERATIONS, 3 * faults)


def _launch(run_dir: Path, iterations: int, kind: str, n: str, drops: list) -> subprocess.Popen:
    args = [*TRAIN_ARGS, "--iterations", str(iterations), "--run-dir", str(run_dir)]
    extra = {DROPS_ENV: json.dumps({"root": str(run_dir), "drops": drops})} if drops else {}
    # `-m`, as `python -m planet_colab` runs: how CPython ends a stopped process depends on it.
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(LAUNCHER.parent), str(ROOT)]), **extra)
    return subprocess.Popen([sys.executable, "-m", "fault_launcher", kind, n, "--", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _fault(rng: random.Random, kind: str) -> tuple[str, str, float | None]:
    """(launcher kind, its N, seconds to wait before a timed signal) for a campaign fault."""
    if kind in ("SIGTERM", "SIGINT"):  # any instant from start-up on (Python's own first instants aside)
        return "none", "0", rng.uniform(0.3, 4.0)
    if kind == "SIGKILL":  # any instant of the loop
        return "none", "0", rng.uniform(0.0, 1.5)
    sig = rng.choice(["SIGTERM", "SIGINT"])
    if kind == "stop-in-write":
        return f"{sig}-in-write", str(rng.randint(1, 40)), None
    if kind == "kill-at-rename":
        return rng.choice(["checkpoint", "episode"]), str(rng.randint(1, 3)), None
    return f"{sig}-at-import", rng.choice(["torch", "gymnasium", "planet_colab.run+exec", "planet_colab.train+exec"]), None


def _drops(rng: random.Random) -> list:
    """Up to two Drive drops shorter than the retries (at most 3 failed tries of a call in a row)."""
    drops = []
    # Two calls of different kinds: two drops of one kind can join into 4–6 failures in a row, a mount
    # lost for good, which ends the process with exit 3 and its one line (tests/test_drive_drops.py).
    for call in rng.sample(sorted(DROP_CALLS), rng.choice([0, 1, 1, 2])):
        first = rng.randint(1, CALLS_PER_PROCESS.get(call, 40))
        drops.append((call, first, rng.randint(1, 3), rng.choice(["ENOTCONN", "EIO"])))
    return drops


def _damage(run_dir: Path, rng: random.Random, iterations: int) -> str | None:
    """Damage an intact file that a resume gets back exactly; return its name (None when there is none)."""
    checkpoints = sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))
    newest = int(checkpoints[-1].stem.split("_")[1]) if checkpoints else -1
    if newest == iterations - 1:
        return None  # a finished run loads nothing again: a damaged file would stay where it is
    if rng.random() < 0.5 and len(checkpoints) >= 2:  # the resume falls back to the one before
        index = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["checkpoints"]
        size = checkpoints[-1].stat().st_size
        if index.get(checkpoints[-1].name, {}).get("size") != size:
            return None  # damaged already, and not loaded since
        checkpoints[-1].write_bytes(checkpoints[-1].read_bytes()[: size // 2])
        return checkpoints[-1].name
    # A seed episode, or one after the newest checkpoint's: both are collected again, identically.
    covered = 2 + newest + 1
    episodes = [p for p in sorted((run_dir / "episodes").glob("episode_*.npz"))
                if (int(p.stem.split("_")[1]) <= 2 or int(p.stem.split("_")[1]) > covered)
                and not p.read_bytes().startswith(DAMAGE)]
    if not episodes:
        return None
    victim = rng.choice(episodes)
    victim.write_bytes(DAMAGE)
    return victim.name


def _check_exit(proc: subprocess.Popen, out: str, err: str, context: str) -> None:
    """Every exit is a documented one: done (0), stopped after saving (130, one line), or our SIGKILL."""
    assert proc.returncode in (0, 130, -signal.SIGKILL), f"{context}: exit {proc.returncode}\n{out}{err}"
    assert "Traceback" not in out + err, f"{context}\n{out}{err}"
    assert all(line.startswith(("warning: ", "Stopped")) for line in err.splitlines()), f"{context}\n{err}"
    if proc.returncode == 130:
        stopped = [line for line in (out + err).splitlines() if line.startswith("Stopped")]
        assert len(stopped) == 1, f"{context}\n{out}{err}"


def test_a_random_fault_campaign_ends_bit_identical_to_an_uninterrupted_run(tmp_path, tmp_path_factory,
                                                                            reference_run):
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(10**6))
    faults = int(os.environ.get(COUNT_ENV) or CI_FAULTS)
    print(f"fault campaign: {SEED_ENV}={seed} {COUNT_ENV}={faults}")
    rng = random.Random(seed)
    iterations = _campaign_iterations(faults)
    reference = reference_run
    if iterations != ITERATIONS:
        reference = tmp_path_factory.mktemp("uninterrupted_long")
        proc = _launch(reference, iterations, "none", "0", [])
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out + err
    run_dir = tmp_path / "campaign"
    kinds = [FAULT_KINDS[i % len(FAULT_KINDS)] for i in range(faults)]  # every kind, then random order
    rng.shuffle(kinds)
    damaged, log = [], []
    for step, kind in enumerate(kinds):
        launcher_kind, n, wait = _fault(rng, kind)
        drops = _drops(rng)
        proc = _launch(run_dir, iterations, launcher_kind, n, drops)
        if wait is not None:
            if kind == "SIGKILL":
                for line in proc.stdout:
                    if line.startswith(("Starting", "Resumed", "Done")):
                        break
            time.sleep(wait)
            if proc.poll() is None:
                proc.send_signal(getattr(signal, kind))
        out, err = proc.communicate(timeout=600)
        log.append(f"{kind}({launcher_kind} {n}{f' {wait:.2f}s' if wait is not None else ''}) drops {drops}: "
                   f"exit {proc.returncode}")
        context = f"{SEED_ENV}={seed} {COUNT_ENV}={faults}, step {step + 1}: " + "; ".join(log)
        _check_exit(proc, out, err, context)
        if rng.random() < 0.3:
            name = _damage(run_dir, rng, iterations)
            if name is not None:
                damaged.append(name)
                log.append(f"damaged {name}")
    print("\n".join(log))

    proc = _launch(run_dir, iterations, "none", "0", [])
    out, err = proc.communicate(timeout=600)
    context = f"{SEED_ENV}={seed} {COUNT_ENV}={faults}: " + "; ".join(log)
    assert proc.returncode == 0, f"{context}\n{out}{err}"
    _check_exit(proc, out, err, context)
    storage = EpisodeStorage(run_dir / "episodes")
    assert storage.num_episodes == 2 + iterations, context  # smoke: 2 seed episodes + one per iteration
    quarantined = sorted(p.name for p in (run_dir / "quarantine").glob("*")) if damaged else []
    assert len(quarantined) == len(damaged), f"{context}: quarantined {quarantined}"  # only what we damaged
    assert_same_run(run_dir, reference, iterations)
