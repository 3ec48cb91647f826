"""This code at the presets' defaults against an older commit with another recipe, one iteration each:
`python -m planet_colab.bench versus --presets cartpole_swingup walker_walk [--baseline-rev REV]`.

Issue 26's yardstick: CPU seconds per collected episode (the train phase plus the collect phase of one
iteration on the seed episodes, fresh weights) here, at each preset's own defaults, against the code of
`--baseline-rev` (default 605ad2a, the code of the first published cartpole result) with `--baseline-set`
(default that result's recipe). Both run the same standalone probe (bench/iteration_probe.py) in
their own process, alternating, in the same run, with the same threads: process CPU seconds are the
figures to compare on a shared machine (wall seconds include waiting for a core). The baseline's
package is taken from `git archive` of this checkout. Human lines, then one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from planet_colab.__main__ import OneLineParser

BASELINE_REV = "605ad2a"
# The recipe of the first published cartpole_swingup result (issue 26), as `--set` gave it.
OLD_RECIPE = ["batch_size=16", "seq_len=25", "train_steps=100", "free_nats=1.0", "kl_balance=0.8",
              "candidates=500", "optim_iters=5", "top_k=50"]
PROBE = Path(__file__).with_name("iteration_probe.py")
REPO = Path(__file__).resolve().parents[2]


def _extract(rev: str, target: Path) -> Path:
    """planet_colab/ as of `rev`, unpacked under `target`; one-line errors where git cannot give it."""
    if not (REPO / ".git").exists():
        raise SystemExit(f"bench versus needs a git checkout of planet_colab to take {rev} from; "
                         f"{REPO} is not one (pass --baseline-dir with an unpacked copy)")
    archive = target / "baseline.tar"
    done = subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), rev, "planet_colab"],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"git archive {rev} failed: {done.stderr.strip().splitlines()[-1]}")
    with tarfile.open(archive) as tar:
        tar.extractall(target / "baseline", filter="data")
    return target / "baseline"


def _probe(package_root: Path, preset: str, changes: dict[str, Any], threads: int, tmp: Path) -> dict[str, Any]:
    """Run the probe in a fresh process whose `planet_colab` is the one under package_root."""
    script = tmp / "iteration_probe.py"  # copied out of bench/ so that its folder shadows nothing
    shutil.copyfile(PROBE, script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_root), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(threads), "LP_NUM_THREADS": str(threads) if threads > 1 else "0"}
    spec = json.dumps({"preset": preset, "changes": changes, "threads": threads})
    done = subprocess.run([sys.executable, str(script), spec], env=env, cwd=tmp, capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"the probe of {preset} under {package_root} failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Time one iteration per preset, this code against the baseline, and print both and their ratio."""
    from planet_colab.bench.iteration import SUMMARY_FLAGS
    from planet_colab.config import PRESETS, changes_from_args
    from planet_colab.precision import cpu_flags

    p = OneLineParser(prog="python -m planet_colab.bench versus", description=__doc__)
    p.add_argument("--presets", nargs="+", default=["cartpole_swingup", "walker_walk"])
    p.add_argument("--baseline-rev", default=BASELINE_REV)
    p.add_argument("--baseline-dir", type=Path, help="an unpacked older planet_colab (its parent folder) instead")
    p.add_argument("--baseline-set", nargs="*", default=OLD_RECIPE, metavar="KEY=VALUE")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="changes to this code's preset defaults (none: the defaults are what is measured)")
    p.add_argument("--rounds", type=int, default=1, help="alternating baseline/current pairs per preset")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    for preset in args.presets:
        if preset not in PRESETS:
            p.error(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if args.rounds < 1 or args.threads < 1:
        p.error("--rounds and --threads must be positive")
    base_changes = changes_from_args(args.baseline_set)
    changes = changes_from_args(args.overrides)
    flags = sorted(cpu_flags() & set(SUMMARY_FLAGS))
    print(f"CPU flags {' '.join(flags)}; {args.threads} torch thread(s); load {os.getloadavg()[0]:.2f}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_versus_") as tmp_name:
        tmp = Path(tmp_name)
        base_root = args.baseline_dir.resolve() if args.baseline_dir else _extract(args.baseline_rev, tmp)
        label = str(args.baseline_dir) if args.baseline_dir else args.baseline_rev
        for preset in args.presets:
            pairs = []
            for r in range(args.rounds):
                old = _probe(base_root, preset, base_changes, args.threads, tmp)
                new = _probe(REPO, preset, changes, args.threads, tmp)
                pairs.append((old, new))
                for name, x in (("baseline", old), ("current ", new)):
                    c = x["config"]
                    print(f"{preset} round {r + 1} {name}: train {x['train_cpu_s']:.1f} s ({x['train_steps']} steps "
                          f"B{c['batch_size']}×L{c['seq_len']}, depth {c['cnn_depth']}) + collect "
                          f"{x['collect_cpu_s']:.1f} s ({x['agent_steps']} plans, CEM {c['candidates']}×"
                          f"{c['optim_iters']}{' warm' if c.get('plan_warm_start') else ''}) = "
                          f"{x['train_cpu_s'] + x['collect_cpu_s']:.1f} CPU s per collected episode "
                          f"({x['precision']}; wall {x['train_wall_s'] + x['collect_wall_s']:.1f} s)")
            per_ep = {k: statistics.median(x["train_cpu_s"] + x["collect_cpu_s"] for x in (pair[i] for pair in pairs))
                      for i, k in enumerate(("baseline", "current"))}
            ratio = per_ep["baseline"] / per_ep["current"]
            print(f"{preset}: {per_ep['baseline']:.1f} → {per_ep['current']:.1f} CPU s per collected episode: "
                  f"{ratio:.2f}× fewer (baseline {label} with {' '.join(args.baseline_set) or 'its defaults'})")
            results[preset] = {
                "baseline_cpu_s_per_episode": round(per_ep["baseline"], 2),
                "current_cpu_s_per_episode": round(per_ep["current"], 2), "ratio": round(ratio, 3),
                "rounds": [{k: {f: (round(v, 2) if isinstance(v, float) else v) for f, v in x.items()
                                if f not in ("package", "config")} for k, x in zip(("baseline", "current"), pair)}
                           for pair in pairs]}
    print(json.dumps({"bench": "versus", "baseline": label, "baseline_set": args.baseline_set,
                      "current_set": args.overrides, "threads": args.threads, "cpu_flags": flags,
                      "load1_after": round(os.getloadavg()[0], 2), "presets": results}))
