"""Compare a sweep's runs: evaluation return against episodes, mean ± std across seeds per preset.

Each run's metrics.jsonl is the source of truth; everything here is derived from it and can be
written again at any time. `write_report(root)` writes `root/report/sweep.{png,md,json}` and one
TensorBoard event file per run (`root/tensorboard/<preset>/seed_<s>/`, so `%tensorboard --logdir
root/tensorboard` shows every run's losses and returns side by side). A run still in progress is
shown up to where it is. Every file is written whole under a temporary name and renamed, and an
event file is never appended to: a run with new rows gets a new event file that replaces its old one.
A published single-run result (bench learn's `<preset>.json`) can be drawn beside a preset's seeds as
its reference, and a hand-written block in the page (hand_notes' markers) survives a new report.

The page opens with a benchmark table: per preset, the return at its last scheduled evaluation at or
before 100 episodes (100k environment steps on the suite's tasks) beside PlaNet's and Dreamer's published
100k returns or a measured random policy (baselines.py), the hours a run took to get there and the CPU
its metrics rows name, and whether every seed ran at its preset's defaults.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from planet_colab.config import Config
from planet_colab.hand_notes import EMPTY_NOTES, kept_notes
from planet_colab.safeio import retry_io, write_atomic
from planet_colab.words import plural, published_path

__all__ = ["find_runs", "read_reference", "summarize", "plot_sweep", "format_markdown",
           "write_tensorboard", "write_report", "benchmark_episodes", "preset_differences",
           "add_random_policies", "add_zero_policies", "measure_zero_policy", "BENCHMARK_EPISODES",
           "ALLOWED_DIFFERENCES"]

TB_HINT = "pip install tensorboard  (Colab has it)"
# metrics.jsonl key -> TensorBoard tag; the step of every point is the number of episodes stored.
TB_TAGS = {"eval_mean": "return/eval", "collect_return": "return/collect", "loss": "loss/total",
           "obs_loss": "loss/obs", "reward_loss": "loss/reward", "kl_loss": "loss/kl", "kl": "train/kl_itself",
           "grad_norm": "train/grad_norm", "seconds": "time/seconds_per_iteration"}
# The benchmark table's point: the published figures are returns after 100k environment steps, which is
# 100 episodes of the suite's 1000 steps; a run is read at its last scheduled evaluation at or before it.
BENCHMARK_EPISODES = 100
# Config fields a benchmark run may change from its preset's and still count as at the preset's defaults:
# which seed, how long, when it checkpoints or evaluates, and the precision (a speed choice; bf16 learns
# as fp32 does, docs/results/precision.md). Anything else makes it another recipe, and the report says so.
ALLOWED_DIFFERENCES = ("seed", "total_iterations", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints",
                       "eval_every", "precision")
NOT_RECORDED = "not recorded"


def _seed_number(name: str) -> int | None:
    """The seed of a run's name "seed_<s>" (its directory's and its sweep.json key), None for any other name."""
    number = name[len("seed_"):] if name.startswith("seed_") else ""
    return int(number) if number.isdigit() else None


def find_runs(root: str | os.PathLike) -> dict[str, dict[int, Path]]:
    """{preset: {seed: run_dir}} for every `root/<preset>/seed_<s>` holding a config.json."""
    runs: dict[str, dict[int, Path]] = {}
    root = Path(root)
    if not root.is_dir():
        return runs
    for preset_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for run_dir in preset_dir.glob("seed_*"):
            seed = _seed_number(run_dir.name)
            if seed is not None and (run_dir / "config.json").is_file():
                runs.setdefault(preset_dir.name, {})[seed] = run_dir
    return {p: dict(sorted(seeds.items())) for p, seeds in runs.items()}


def _read_rows(run_dir: Path) -> list[dict[str, Any]]:
    from planet_colab.run import read_metrics

    return read_metrics(run_dir)


def _machine(row: dict[str, Any], cpu: str | None) -> str:
    """The machine a metrics row was measured on, in words; `cpu` stands in for rows that record none."""
    if "cpu" not in row:
        return cpu or NOT_RECORDED
    flags = row.get("cpu_flags") or []
    text = f"{row['cpu']} ({', '.join(flags) if flags else 'no AVX2'})"
    if "threads" in row:
        text += f", {plural(row['threads'], 'thread')}"
    return text + (f", {row['gpu']}" if row.get("gpu") else "")


def _run_summary(run_dir: Path, root: Path, cpu: str | None = None) -> dict[str, Any]:
    config = Config.load(run_dir / "config.json")
    rows = _read_rows(run_dir)
    evals: dict[str, list[Any]] = {"episodes": [], "eval_mean": [], "eval_std": [], "hours": [], "cpu_hours": [],
                                   "machines": []}
    seconds, cpu_seconds, machines = 0.0, 0.0, []
    for row in rows:
        # Wall time to the end of each row: its iteration's seconds and the checkpoint written after them
        # (seed episodes and start-up are in no row). A resumed run may have changed machine: each
        # evaluation keeps the machines of the rows up to it.
        seconds += row.get("seconds", 0.0) + row.get("checkpoint_s", 0.0)
        # Process CPU time, the work without the waits for a core: only while every row so far has it
        # (rows written before the loop recorded it have none, and half a sum would read as a cost).
        cpu_seconds = cpu_seconds + row["cpu_s"] if cpu_seconds is not None and "cpu_s" in row else None
        machine = _machine(row, cpu)
        if machine not in machines:
            machines.append(machine)
        if "eval_mean" in row:
            cpu_hours = None if cpu_seconds is None else cpu_seconds / 3600.0
            for key, value in (("episodes", row["episodes"]), ("eval_mean", row["eval_mean"]),
                               ("eval_std", row["eval_std"]), ("hours", seconds / 3600.0),
                               ("cpu_hours", cpu_hours), ("machines", list(machines))):
                evals[key].append(value)
    return {"run_dir": published_path(run_dir, root), "iterations_done": len(rows),
            "total_iterations": config.total_iterations,
            "episodes_done": rows[-1]["episodes"] if rows else 0, **evals,
            "config": config.to_dict()}  # all of it: anyone can check it against the preset's


def _curve(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std (ddof 0) across the seeds that have reached each evaluated episode count.

    A count that a seed passed without evaluating there (seeds evaluated at different cadences, e.g. a
    benchmark's `--eval-every 20` beside runs begun at 10) is left out: its mean would be over a
    different group of seeds, which the curve keeps for counts some seeds have not reached yet."""
    at: dict[int, list[float]] = {}
    for run in runs.values():
        for episodes, value in zip(run["episodes"], run["eval_mean"]):
            at.setdefault(episodes, []).append(value)
    skipped = {e for e in at for run in runs.values() if run["episodes_done"] >= e and e not in run["episodes"]}
    return [{"episodes": e, "mean": float(np.mean(v)), "std": float(np.std(v)), "seeds": len(v)}
            for e, v in sorted(at.items()) if e not in skipped]


def read_reference(path: str | os.PathLike) -> dict[str, Any]:
    """A published single-run result (bench learn's `<preset>.json`) as {"file", "curve": [{episodes, mean, std}]}."""
    expected = "bench learn's results JSON, e.g. docs/results/pendulum.json"
    if not Path(path).is_file():
        raise ValueError(f"reference {path} {'is a directory' if Path(path).is_dir() else 'does not exist'} "
                         f"(expected {expected})")
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"reference {path} is not JSON (expected {expected})") from None
    curve = data.get("curve") if isinstance(data, dict) else None

    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))

    if not isinstance(curve, list) or not curve or not all(
            isinstance(c, list) and len(c) == 3 and all(map(number, c)) and c[0] == int(c[0]) >= 1
            for c in curve):
        raise ValueError(f"reference {path} holds no evaluation curve of [episodes, mean, std] rows "
                         f"(expected {expected})")
    return {"file": published_path(path),
            "curve": [{"episodes": int(e), "mean": float(m), "std": float(s)} for e, m, s in curve]}


def benchmark_episodes(config: Config, limit: int = BENCHMARK_EPISODES) -> int | None:
    """Episodes stored at the config's last scheduled evaluation at or before `limit` episodes (None: none is)."""
    from planet_colab.train import evaluates  # the loop's own schedule, not a copy of it

    scheduled = [config.seed_episodes + (it + 1) * config.collect_episodes
                 for it in range(config.total_iterations) if evaluates(config, it)]
    return max((e for e in scheduled if e <= limit), default=None)


def preset_differences(configs: Mapping[str, Mapping[str, Any]], preset: str) -> dict[str, dict[str, Any]]:
    """{field: {"preset": default, run: value, …}} where a run's config differs from `get_config(preset)`
    outside ALLOWED_DIFFERENCES (empty: every run is at the preset's defaults). A field a run's config lacks
    (written before the field existed) reads as Config's default, which is what loading that config gives."""
    from planet_colab.config import PRESETS, Config, get_config

    if preset not in PRESETS:  # a preset this code no longer has: nothing to be at the defaults of
        return {"preset": {"preset": None, **{run: c.get("preset") for run, c in configs.items()}}}
    defaults, unset = get_config(preset).to_dict(), Config().to_dict()
    differences: dict[str, dict[str, Any]] = {}
    for run, config in configs.items():
        config = {**unset, **config}
        for field in sorted(set(defaults) | set(config)):
            if field not in ALLOWED_DIFFERENCES and config.get(field) != defaults.get(field):
                differences.setdefault(field, {"preset": defaults.get(field)})[run] = config.get(field)
    return differences


def _benchmark(preset: str, data: dict[str, Any]) -> dict[str, Any]:
    """The benchmark table's row of a preset: its return at the table's point, the published figures, cost, CPU."""
    from planet_colab.baselines import published_100k

    targets = [benchmark_episodes(Config.from_dict(run["config"])) for run in data["runs"].values()]
    target = max((t for t in targets if t is not None), default=None)
    # A run in progress counts up to where it is: the furthest evaluation at or before the table's point.
    point = max((c for c in data["curve"] if target is not None and c["episodes"] <= target),
                key=lambda c: c["episodes"], default=None)
    row: dict[str, Any] = {"episodes": target, "at_episodes": None, "mean": None, "std": None, "seeds": 0,
                           "of": len(data["seeds"]), "hours_per_run": None, "hours": {},
                           "cpu_hours_per_run": None, "cpu_hours": {}, "machines": []}
    if point is not None:
        row.update(at_episodes=point["episodes"], mean=point["mean"], std=point["std"], seeds=point["seeds"])
        for seed, run in data["runs"].items():
            if point["episodes"] in run["episodes"]:
                k = run["episodes"].index(point["episodes"])
                row["hours"][seed] = run["hours"][k]
                row["cpu_hours"][seed] = run.get("cpu_hours", [None] * len(run["episodes"]))[k]
                row["machines"] += [m for m in run["machines"][k] if m not in row["machines"]]
        row["hours_per_run"] = float(np.mean(list(row["hours"].values())))
        if row["cpu_hours"] and None not in row["cpu_hours"].values():
            row["cpu_hours_per_run"] = float(np.mean(list(row["cpu_hours"].values())))
    row["in_progress"] = row["at_episodes"] != target or row["seeds"] < row["of"]
    row["published"] = published_100k(preset)
    return row


def add_random_policies(summary: dict[str, Any], policies: Mapping[str, dict[str, Any]]) -> None:
    """Put measured random-policy returns (baselines.random_policy_return) into their presets' benchmark rows."""
    for preset, figure in policies.items():
        if preset not in summary["presets"]:
            raise ValueError(f"the random policy of {preset!r} has no runs to stand beside: the sweep holds "
                             f"{', '.join(summary['presets']) or 'no runs'}")
        summary["presets"][preset]["benchmark"]["random_policy"] = dict(figure)


def _zero_policy_runs(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per seed evaluated at the benchmark row's point: what replaying that evaluation with zero actions depends on."""
    at, runs = data["benchmark"]["at_episodes"], {}
    for seed, run in data["runs"].items():
        if at is None or at not in run["episodes"]:
            continue
        config = Config.from_dict(run["config"])
        runs[seed] = {"iteration": (at - config.seed_episodes) // config.collect_episodes - 1, "seed": config.seed,
                      "env_name": config.env_name, "action_repeat": config.action_repeat,
                      "max_episode_steps": config.max_episode_steps, "episodes": config.eval_episodes}
    return runs


def measure_zero_policy(preset: str, data: dict[str, Any], say: Callable[[str], None] = print) -> dict[str, Any]:
    """Zero actions on the environment seeds of each seed's evaluation at the row's point: mean ± std across seeds."""
    from planet_colab.baselines import zero_policy_returns

    runs = _zero_policy_runs(data)
    if not runs:
        raise ValueError(f"--zero-baseline {preset}: no run has evaluated yet, so there are no evaluation "
                         "seeds to play again")
    at = data["benchmark"]["at_episodes"]
    say(f"Playing {preset}'s evaluations after {at} episodes again with zero actions ({len(runs)} seed(s), "
        f"{sum(r['episodes'] for r in runs.values())} episodes of physics and rendering) …")
    for seed, run in runs.items():
        run["returns"] = zero_policy_returns(Config.from_dict(data["runs"][seed]["config"]), run["iteration"],
                                             run["episodes"])
        run["mean"] = float(np.mean(run["returns"]))
    means = [run["mean"] for run in runs.values()]
    figure = {"episodes": at, "mean": float(np.mean(means)), "std": float(np.std(means)), "runs": runs}
    say(f"{preset}, zero actions on the same seeds: {figure['mean']:.1f} (the agents: {data['benchmark']['mean']:.1f})")
    return figure


def add_zero_policies(summary: dict[str, Any], figures: Mapping[str, dict[str, Any]]) -> None:
    """Put zero-action replays of the row's evaluations (measure_zero_policy) into their presets' benchmark rows."""
    for preset, figure in figures.items():
        summary["presets"][preset]["benchmark"]["zero_policy"] = dict(figure)


def summarize(root: str | os.PathLike,
              references: Mapping[str, str | os.PathLike] | None = None,
              cpu: str | None = None,
              kept: Mapping[str, Mapping[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Every run's evaluations and config, each preset's across-seed curve, benchmark row and references, as
    JSON-able data; `cpu` names the machine of metrics rows that record none; `kept` adds finished runs of
    an earlier report whose directories are no longer under the root ({preset: {"seed_<s>": run}})."""
    presets = {}
    found = find_runs(root)
    for preset in sorted(set(found) | set(kept or {})):
        runs = {f"seed_{seed}": _run_summary(run_dir, Path(root), cpu)
                for seed, run_dir in found.get(preset, {}).items()}
        runs.update({name: dict(run) for name, run in (kept or {}).get(preset, {}).items() if name not in runs})
        runs = dict(sorted(runs.items(), key=lambda item: _seed_number(item[0])))
        seeds = [_seed_number(name) for name in runs]
        differences = preset_differences({seed: run["config"] for seed, run in runs.items()}, preset)
        presets[preset] = {"seeds": seeds, "runs": runs, "curve": _curve(runs),
                           "at_preset_defaults": not differences, "preset_differences": differences}
        presets[preset]["benchmark"] = _benchmark(preset, presets[preset])
    for preset, path in (references or {}).items():
        if preset not in presets:
            raise ValueError(f"the reference for {preset!r} has no runs to stand beside: {root} holds "
                             f"{', '.join(presets) or 'no runs'}")
        presets[preset]["reference"] = read_reference(path)
    # Names, not this machine's paths: the page is published (run directories are relative to the root).
    return {"root": Path(os.path.abspath(root)).name, "std": "across seeds, ddof 0",
            "allowed_differences": list(ALLOWED_DIFFERENCES), "presets": presets}


def _has_reference_lines(data: dict[str, Any]) -> bool:
    """True when the preset has a published figure or a measured random policy to draw as a line."""
    bench = data.get("benchmark", {})
    return bool(bench.get("published") or bench.get("random_policy"))


def _draw_preset(ax: Any, data: dict[str, Any], color: str, name: str = "") -> None:
    """A preset's seeds (thin), their mean with a ± std band, and its published run; labels start with `name`."""
    curve = data["curve"]
    if not curve:
        return
    x = np.array([c["episodes"] for c in curve])
    mean = np.array([c["mean"] for c in curve])
    std = np.array([c["std"] for c in curve])
    n = len(data["seeds"])
    label = f"mean of {plural(n, 'seed')} ± std"
    ax.plot(x, mean, color=color, label=f"{name} ({label})" if name else label)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    # A point that fewer seeds have reached yet is a mean over a different group: drawn hollow.
    full = np.array([c["seeds"] == n for c in curve])
    ax.plot(x[full], mean[full], linestyle="none", marker="o", markersize=4, color=color)
    if not full.all():
        ax.plot(x[~full], mean[~full], linestyle="none", marker="o", markersize=5, markerfacecolor="white",
                color=color, label=f"{name + ': ' if name else ''}fewer seeds so far (see the table)")
    for run in data["runs"].values():  # each seed thin, so a lagging run is visible
        ax.plot(run["episodes"], run["eval_mean"], color=color, alpha=0.35, linewidth=0.8)
    if "reference" in data:  # no band: its std is over evaluation episodes, not across seeds
        ref = data["reference"]
        ax.plot([c["episodes"] for c in ref["curve"]], [c["mean"] for c in ref["curve"]], color=color,
                linestyle="--", marker="s", markersize=3,
                label=f"{name + ': ' if name else ''}one published run ({Path(ref['file']).name})")


def _draw_reference_lines(ax: Any, bench: dict[str, Any]) -> None:
    """PlaNet@100k, Dreamer@100k and the random policy as horizontal lines, the table's point as a vertical one."""
    published, random_policy = bench.get("published"), bench.get("random_policy")
    if published:
        ax.axhline(published["planet"], color="black", linestyle="--", linewidth=1,
                   label=f"PlaNet@100k ({published['planet']:.0f})")
        ax.axhline(published["dreamer"], color="0.45", linestyle=":", linewidth=1.3,
                   label=f"Dreamer@100k ({published['dreamer']:.0f})")
    if random_policy:
        ax.axhline(random_policy["mean"], color="C3", linestyle="-.", linewidth=1,
                   label=f"random policy ({random_policy['mean']:.1f} ± {random_policy['std']:.1f})")
    if bench.get("episodes") is not None:
        ax.axvline(bench["episodes"], color="0.7", linewidth=0.8, zorder=0,
                   label=f"the table's point ({bench['episodes']} episodes)")


def plot_sweep(summary: dict[str, Any], panels: bool | None = None) -> Any:
    """Evaluation return against episodes: per preset a line at the seeds' mean, a band of ± std.

    One axes for all presets, or with `panels` one per preset with its reference lines (PlaNet@100k,
    Dreamer@100k, the random policy); None: panels when some preset has a reference line.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    presets = summary["presets"]
    if panels is None:
        panels = any(_has_reference_lines(d) for d in presets.values())
    if not panels:
        fig = Figure(figsize=(8, 4.5))
        ax = fig.add_subplot()
        for i, (preset, data) in enumerate(presets.items()):
            _draw_preset(ax, data, f"C{i % 10}", name=preset)
        axes = [ax]
        ax.set_title(f"{Path(summary['root']).name}: noise-free evaluation return across seeds")
    else:
        cols = min(3, len(presets))
        rows = -(-len(presets) // cols)
        fig = Figure(figsize=(4.6 * cols, 3.6 * rows))
        axes = [fig.add_subplot(rows, cols, i + 1) for i in range(len(presets))]
        for ax, (preset, data) in zip(axes, presets.items()):
            _draw_preset(ax, data, "C0")
            _draw_reference_lines(ax, data.get("benchmark", {}))
            # From the first episode on, so a task with no evaluation yet shows its whole way, not 95–105.
            ax.set_xlim(left=0)
            ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
            ax.set_title(f"{preset} ({plural(len(data['seeds']), 'seed')})", fontsize=10)
        fig.suptitle(f"{Path(summary['root']).name}: noise-free evaluation return, each seed thin")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("episodes collected")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8 if not panels else 6.5)
    fig.tight_layout()
    return fig


def _pm(mean: float | None, std: float | None) -> str:
    return "–" if mean is None else f"{mean:.1f} ± {std:.1f}"


def report_dir(root: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Where a sweep's report goes: `out_dir`, else ROOT/report."""
    return Path(out_dir) if out_dir is not None else Path(root) / "report"


def _has_zero_policy(presets: dict[str, Any]) -> bool:
    """Whether some preset's benchmark row carries a zero-action replay of its evaluations (a column)."""
    return any("zero_policy" in d["benchmark"] for d in presets.values())


def _has_random_policy(presets: dict[str, Any]) -> bool:
    """Whether some preset's benchmark row carries a measured random policy (the table grows a column)."""
    return any("random_policy" in d["benchmark"] for d in presets.values())


def _all_finished(summary: dict[str, Any]) -> bool:
    """True when every run of the sweep has done all its iterations."""
    return all(run["iterations_done"] >= run["total_iterations"]
               for data in summary["presets"].values() for run in data["runs"].values())


def _status(summary: dict[str, Any]) -> str:
    """Which runs are finished, which are on their way, which have no iteration yet (queued or starting)."""
    runs = [(f"{preset}/{seed}", run) for preset, data in summary["presets"].items()
            for seed, run in data["runs"].items()]
    finished = [name for name, run in runs if run["iterations_done"] >= run["total_iterations"]]
    kept = [name for name, run in runs if run.get("kept_from_earlier_report")]
    said = (f" {plural(len(kept), 'run')} ({', '.join(kept)}) {'is' if len(kept) == 1 else 'are'} kept from "
            "the earlier report: finished, but no longer under the root (a machine that went with its disk), "
            "so the figures are that report's." if kept else "")
    if _all_finished(summary):
        return f"All {len(runs)} run{'s' if len(runs) != 1 else ''} finished their iterations.{said}"
    going = [f"{name} at iteration {run['iterations_done']} of {run['total_iterations']}"
             for name, run in runs if 0 < run["iterations_done"] < run["total_iterations"]]
    waiting = [name for name, run in runs if run["iterations_done"] == 0]
    parts = going + ([f"no iteration yet: {', '.join(waiting)}"] if waiting else [])
    return (f"**In progress:** {len(finished)} of {len(runs)} runs finished; {'; '.join(parts)}. The same "
            "`python -m planet_colab sweep …` command resumes them, and `sweep-report` makes this page again."
            + said)


def _preset_table(data: dict[str, Any]) -> list[str]:
    """Evaluation return by episodes: across the seeds (the mean alone for one seed) and the reference run."""
    across = {c["episodes"]: c for c in data["curve"]}
    ref = {c["episodes"]: c for c in data["reference"]["curve"]} if "reference" in data else None
    head = "| episodes | seeds | eval return across seeds |"
    lines = [head + (f" one published run (`{data['reference']['file']}`) |" if ref is not None else ""),
             "|---" * (3 + (ref is not None)) + "|"]
    for episodes in sorted(set(across) | set(ref or {})):
        c = across.get(episodes)
        value = "–" if c is None else f"{c['mean']:.1f}" if c["seeds"] == 1 else _pm(c["mean"], c["std"])
        row = f"| {episodes} | {c['seeds'] if c else 0} of {len(data['seeds'])} | {value} |"
        if ref is not None:
            r = ref.get(episodes)
            row += f" {_pm(r['mean'], r['std']) if r else '–'} |"
        lines.append(row)
    return lines


def _hours(hours: float | None) -> str:
    """Hours with three significant digits or so ("0.90", "12.3"), "–" for none."""
    return "–" if hours is None else f"{hours:.2f}" if hours < 10 else f"{hours:.1f}"


def _benchmark_rows(summary: dict[str, Any]) -> list[str]:
    """The benchmark table itself (header and a row per preset): the page's and the README's."""
    presets = summary["presets"]
    random, zero = _has_random_policy(presets), _has_zero_policy(presets)
    lines = ["| task | episodes | return | PlaNet@100k | Dreamer@100k |" + (" random policy |" if random else "")
             + (" zero actions, same seeds |" if zero else "") + " hours per run | CPU |",
             "|---|---:|---:|---:|---:|" + ("---:|" if random else "") + ("---:|" if zero else "") + "---:|---|"]
    for preset, data in presets.items():
        b = data["benchmark"]
        if b["episodes"] is None:
            episodes = f"none ≤ {BENCHMARK_EPISODES}"
        elif b["at_episodes"] is None:
            episodes = f"– of {b['episodes']} (in progress)"
        elif b["at_episodes"] != b["episodes"]:
            episodes = f"{b['at_episodes']} of {b['episodes']} (in progress)"
        else:
            episodes = str(b["episodes"])
        seeds = f"{b['seeds']} of {b['of']} seeds" if b["seeds"] < b["of"] else plural(b["seeds"], "seed")
        value = "–" if b["mean"] is None else f"{b['mean']:.1f}" if b["seeds"] == 1 else _pm(b["mean"], b["std"])
        published = b.get("published") or {}
        planet, dreamer = (f"{published[k]:.0f}" if k in published else "–" for k in ("planet", "dreamer"))
        row = f"| `{preset}` | {episodes} | {value} ({seeds}) | {planet} | {dreamer} |"
        if random:
            rp = b.get("random_policy")
            row += f" {_pm(rp['mean'], rp['std']) if rp else '–'} |"
        if zero:
            zp = b.get("zero_policy")
            row += (" – |" if not zp else f" {zp['mean']:.1f} |" if len(zp["runs"]) == 1
                    else f" {_pm(zp['mean'], zp['std'])} |")
        machines = "; ".join(b["machines"]).replace("|", "\\|") or "–"  # a --cpu text may hold a pipe
        cpu = b.get("cpu_hours_per_run")
        hours = _hours(b["hours_per_run"]) + (f" ({_hours(cpu)} CPU)" if cpu is not None else "")
        lines.append(row + f" {hours} | {machines} |")
    return lines


def _benchmark_table(summary: dict[str, Any]) -> list[str]:
    """Per preset: return at the table's point across seeds, the published figures, hours per run, CPU."""
    from planet_colab.baselines import RANDOM_POLICY_EPISODES

    presets = summary["presets"]
    random, zero = _has_random_policy(presets), _has_zero_policy(presets)
    allowed = ", ".join(summary.get("allowed_differences", ALLOWED_DIFFERENCES))
    lines = [
        "## Benchmark", "",
        f"Return at the last scheduled evaluation at or before {BENCHMARK_EPISODES} episodes ({BENCHMARK_EPISODES}k "
        "environment steps for the 1000-step tasks), mean ± std across seeds. PlaNet@100k and Dreamer@100k as "
        "published after 100k steps (PlaNet: the larger of CURL's and DrQ's Table 1 columns; Dreamer: CURL's "
        "Table 1)"
        + (f"; the random policy: uniform random actions, mean ± std over {RANDOM_POLICY_EPISODES} episodes on "
           "distinct environment seeds at the preset's action repeat and episode length" if random else "")
        + ("; zero actions, same seeds: a policy that does nothing, played on the environment seeds of the very "
           "evaluations the return averages (what the environment pays by itself, e.g. when cup_catch starts "
           "with the ball in the cup), mean ± std across seeds" if zero else "")
        + ". Hours per run: a run's iterations' wall time (train, collect, evaluate, checkpoint) up to that "
        "evaluation, mean over the seeds (seed episodes and start-up not counted), and in brackets the same "
        "iterations' process CPU hours where every seed's metrics rows record them (the work without the "
        "waits for a core of a shared machine); CPU: the machine its metrics rows name.", "",
        *_benchmark_rows(summary)]
    at = [f"`{preset}`" for preset, data in presets.items() if data["at_preset_defaults"]]
    lines.append("")
    if at:
        lines.append(f"At the preset's defaults (every seed's config is the preset's `get_config(preset)` but for "
                     f"{allowed}): {', '.join(at)}.")
    for preset, data in presets.items():
        if not data["at_preset_defaults"]:
            diffs = "; ".join(
                f"{field} " + ", ".join(f"{run} {value!r}" for run, value in values.items() if run != "preset")
                + (f" (preset {values['preset']!r})" if values["preset"] is not None
                   else " (no such preset in this code)") for field, values in data["preset_differences"].items())
            lines.append(f"- `{preset}`: **not at the preset's defaults**: {diffs}.")
    return lines


README_START = "<!-- benchmark table: written by sweep-report --readme -->"
README_END = "<!-- /benchmark table -->"


def readme_table(summary: dict[str, Any], page: str) -> str:
    """The benchmark table (task rows only) as a README block between README_START and README_END."""
    in_progress = not _all_finished(summary)  # as the page's status line says
    return "\n".join([README_START, f"PlaNet's benchmark from 64×64 pixels at the presets' defaults "
                      f"({'in progress' if in_progress else 'finished'}); how it was measured, the curves and "
                      f"every run: [{page}]({page}).", "", *_benchmark_rows(summary), README_END])


def check_readme(readme: str | os.PathLike) -> tuple[str, int, int]:
    """`readme`'s text and where its benchmark block starts and ends; a one-line ValueError where it has none."""
    path = Path(readme)
    if not path.is_file():
        raise ValueError(f"--readme {path} is not a file")
    text = path.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no benchmark block to replace: put the two lines {README_START} and "
                         f"{README_END} where the table should go")
    return text, start, end


def update_readme(readme: str | os.PathLike, summary: dict[str, Any], page: str) -> None:
    """Replace the block between README_START and README_END in `readme` with this summary's table."""
    path = Path(readme)
    text, start, end = check_readme(path)
    _write_file(path, (text[:start] + readme_table(summary, page) + text[end + len(README_END):]).encode())


def format_markdown(summary: dict[str, Any], notes: str = EMPTY_NOTES, png: str = "sweep.png") -> str:
    """The status, kept notes, curve, benchmark table, runs table and, per preset, evaluation return by episodes."""
    lines = [f"# Sweep report: `{summary['root']}`", "", _status(summary), "",
             notes, "", f"![evaluation return across seeds]({png})", "",
             "Noise-free evaluation return: each run's mean ± std over its evaluation episodes; per "
             "preset, the mean ± std (ddof 0) across the seeds that reached that number of episodes. "
             "A run still in progress counts up to where it is."
             + (" A published run's ± is over its own evaluation episodes."
                if any("reference" in d for d in summary["presets"].values()) else ""), "",
             *_benchmark_table(summary), "", "## Runs", "",
             "| run | iterations | episodes | last eval | best eval |", "|---|---|---|---|---|"]
    for preset, data in summary["presets"].items():
        for seed, run in data["runs"].items():
            k = int(np.argmax(run["eval_mean"])) if run["eval_mean"] else None
            last = _pm(run["eval_mean"][-1], run["eval_std"][-1]) if k is not None else "–"
            best = (f"{_pm(run['eval_mean'][k], run['eval_std'][k])} at {run['episodes'][k]}"
                    if k is not None else "–")
            kept = " (kept from the earlier report)" if run.get("kept_from_earlier_report") else ""
            lines.append(f"| {preset}/{seed}{kept} | {run['iterations_done']} of {run['total_iterations']} "
                         f"| {run['episodes_done']} | {last} | {best} |")
    for preset, data in summary["presets"].items():
        lines += ["", f"## {preset}", "", *_preset_table(data)]
    return "\n".join(lines) + "\n"


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def _event_file_bytes(rows: list[dict[str, Any]]) -> bytes:
    """A TensorBoard event file of `rows`, built in a local temporary folder and read back whole."""
    from torch.utils.tensorboard import SummaryWriter

    # Wall times end now and are spaced by each iteration's own duration, so TensorBoard's
    # "relative" axis shows the run's training time.
    elapsed = np.cumsum([r.get("seconds", 0.0) for r in rows])
    start = time.time() - (elapsed[-1] if len(elapsed) else 0.0)
    with tempfile.TemporaryDirectory(prefix="planet_colab_tb_") as tmp:
        writer = SummaryWriter(log_dir=tmp)
        for row, t in zip(rows, elapsed):
            for key, tag in TB_TAGS.items():
                if isinstance(row.get(key), (int, float)):
                    writer.add_scalar(tag, row[key], global_step=row["episodes"], walltime=start + t)
        writer.close()
        (event_file,) = Path(tmp).glob("events.out.tfevents.*")
        return event_file.read_bytes()


def write_tensorboard(root: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """One event file per run under `out_dir/<preset>/seed_<s>`, rewritten only when its rows change.

    Returns the files written. Raises ImportError naming the install command without tensorboard.
    """
    try:
        import tensorboard  # noqa: F401  (torch's SummaryWriter needs it)
    except ImportError:
        raise ImportError(f"TensorBoard files need the tensorboard package: {TB_HINT}") from None
    out_dir = Path(out_dir) if out_dir is not None else Path(root) / "tensorboard"
    written = []
    for preset, seeds in find_runs(root).items():
        for seed, run_dir in seeds.items():
            rows = _read_rows(run_dir)
            if not rows:
                continue
            digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:12]
            target = out_dir / preset / f"seed_{seed}"
            # TensorBoard reads every file whose name holds "tfevents"; the name changes with the rows.
            path = target / f"events.out.tfevents.{len(rows):06d}.{digest}.planet_colab"
            if path.exists():
                continue
            _write_file(path, _event_file_bytes(rows))
            for old in target.glob("events.out.tfevents.*"):
                if old != path:
                    retry_io(lambda old=old: old.unlink(missing_ok=True), path=old, what="remove")
            written.append(path)
    return written


def _random_policy_config(data: dict[str, Any]) -> Config:
    """The config a preset's random policy is measured with: its runs' environment, seed 0 (as bench learn's)."""
    first = next(iter(data["runs"].values()))
    return Config.from_dict(first["config"]).replace(seed=0)


def _earlier_presets(previous: Path) -> dict[str, Any]:
    """The presets of an earlier report's sweep.json in the same place ({} when there is none to read)."""
    try:
        old = json.loads(previous.read_text())["presets"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return old if isinstance(old, dict) else {}


def _kept_random_policies(old: dict[str, Any], summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Random-policy figures of an earlier report's presets `old`, where measured as they would be now."""
    from planet_colab.baselines import RANDOM_POLICY_EPISODES

    kept = {}
    for preset, data in summary["presets"].items():
        figure = ((old.get(preset) or {}).get("benchmark") or {}).get("random_policy")
        config = _random_policy_config(data)
        same = {"seed": config.seed, "env_name": config.env_name, "action_repeat": config.action_repeat,
                "max_episode_steps": config.max_episode_steps, "episodes": RANDOM_POLICY_EPISODES}
        if isinstance(figure, dict) and all(figure.get(k) == v for k, v in same.items()):
            kept[preset] = figure
    return kept


def _earlier_zero_policies(old: dict[str, Any], summary: dict[str, Any]
                           ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Zero-action replays of an earlier report's presets `old`: those whose row still stands on the same
    evaluations (kept), and the presets whose row has moved to other evaluations since (to play again)."""
    kept, moved = {}, []
    for preset, data in summary["presets"].items():
        figure = ((old.get(preset) or {}).get("benchmark") or {}).get("zero_policy")
        if not isinstance(figure, dict) or not isinstance(figure.get("runs"), dict):
            continue
        settings = {seed: {k: v for k, v in run.items() if k not in ("returns", "mean")}
                    for seed, run in figure["runs"].items() if isinstance(run, dict)}
        now = _zero_policy_runs(data)
        if figure.get("episodes") == data["benchmark"]["at_episodes"] and settings == now:
            kept[preset] = figure
        elif now:
            moved.append(preset)
    return kept, moved


# What an earlier report must hold of a run to stand in for its directory (what _run_summary writes).
RUN_FIELDS = ("run_dir", "iterations_done", "total_iterations", "episodes_done", "episodes", "eval_mean", "eval_std",
              "hours", "machines", "config")


def _earlier_runs(old: dict[str, Any], found: dict[str, dict[int, Path]], forget: Sequence[str] = ()
                  ) -> tuple[dict[str, dict[str, dict[str, Any]]], list[str]]:
    """Runs of an earlier report's presets `old` whose directories are no longer under the root: the finished
    ones, kept ({preset: {"seed_<s>": run}}), and the names of the unfinished ones (left out: their figures
    would read as a run that the sweep command resumes). A run named in `forget` ("preset/seed_<s>") is neither."""
    kept: dict[str, dict[str, dict[str, Any]]] = {}
    unfinished = []
    for preset, data in old.items():
        runs = data.get("runs") if isinstance(data, dict) else None
        for name, run in (runs if isinstance(runs, dict) else {}).items():
            seed = _seed_number(name)
            if seed is None or seed in found.get(preset, {}) or f"{preset}/{name}" in forget:
                continue
            if not isinstance(run, dict) or any(field not in run for field in RUN_FIELDS):
                continue  # not a run this code wrote: nothing to keep it from
            try:
                Config.from_dict(run["config"])
                finished = run["iterations_done"] >= run["total_iterations"]
            except (TypeError, ValueError):
                continue  # a damaged entry: nothing to keep
            if finished:
                kept.setdefault(preset, {})[name] = {**run, "kept_from_earlier_report": True}
            else:
                unfinished.append(f"{preset}/{name} (iteration {run['iterations_done']} of {run['total_iterations']})")
    return kept, unfinished


def _check_forget(forget: Sequence[str], old: dict[str, Any], found: dict[str, dict[int, Path]], root: Path) -> None:
    """A one-line ValueError for a --forget that names no run of the earlier report, or one still under the root."""
    names = _run_names(old)
    for name in forget:
        preset, _, seed = name.partition("/")
        if _seed_number(seed) in found.get(preset, {}):
            raise ValueError(f"--forget {name}: that run is still under {root}, and a report shows every run "
                             "there (move its directory out of the root to leave it out)")
        if name not in names:
            raise ValueError(f"--forget {name}: the earlier report holds no such run (PRESET/seed_<s>, e.g. "
                             f"{next(iter(names), 'cartpole_swingup/seed_1')})")


def _run_names(old: dict[str, Any]) -> list[str]:
    """Every "preset/seed_<s>" of an earlier report's presets."""
    return [f"{preset}/{name}" for preset, data in old.items() if isinstance(data, dict)
            and isinstance(data.get("runs"), dict) for name in data["runs"]]


def write_report(root: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None,
                 say: Callable[[str], None] = print, out_dir: str | os.PathLike | None = None,
                 references: Mapping[str, str | os.PathLike] | None = None,
                 random_baseline: Sequence[str] = (), cpu: str | None = None,
                 zero_baseline: Sequence[str] = (), forget: Sequence[str] = ()) -> dict[str, Any]:
    """Write sweep.{png,md,json} (to out_dir, default root/report) and the TensorBoard files; return the summary.

    `random_baseline`: presets whose random policy is measured now (baselines.random_policy_return); one
    already in out_dir's sweep.json, measured on the same environment settings, is kept without it.
    `cpu` names the machine of metrics rows that record none (runs started before rows recorded it).
    `zero_baseline`: presets whose row's evaluations are played again with zero actions now
    (measure_zero_policy); one already in out_dir's sweep.json is kept without it while its row stands on
    the same evaluations, and played again (said) once the row has moved to newer ones.
    A finished run of out_dir's sweep.json whose directory is no longer under the root (a runtime that died
    with its disk) is kept from there and marked so; `forget` ("preset/seed_<s>") leaves such a run out.
    """
    from planet_colab.baselines import random_policy_return
    from planet_colab.frames import save_figure

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"the sweep's root (--root) {root} "
                         f"{'is a file, not a directory' if root.exists() else 'does not exist'}")
    out = report_dir(root, out_dir)
    for flag, folder in (("--out", out), ("--tensorboard-dir", tensorboard_dir)):
        existing = next((p for p in (Path(folder), *Path(folder).parents) if p.exists()), None) \
            if folder is not None else None
        if existing is not None and not existing.is_dir():
            raise ValueError(f"{flag} {folder} cannot be a folder: {existing} is a file")
    earlier = _earlier_presets(out / "sweep.json")  # read once: runs and both kinds of baseline it may hold
    found = find_runs(root)
    _check_forget(forget, earlier, found, root)
    kept, unfinished = _earlier_runs(earlier, found, forget)
    for name in unfinished:
        say(f"{name} is in {out / 'sweep.json'} but no longer under {root}, and it had not finished: left out "
            "of this report (the sweep command starts it again)")
    for preset, runs in kept.items():
        for name in runs:
            say(f"{preset}/{name} kept from {out / 'sweep.json'}: finished, and no longer under {root} "
                f"(`--forget {preset}/{name}` leaves it out)")
    summary = summarize(root, references, cpu=cpu, kept=kept)  # after the cheap checks
    if not summary["presets"]:
        raise ValueError(f"{root} holds no runs (expected {root}/<preset>/seed_<s>/config.json); "
                         "start them with `python -m planet_colab sweep --root DIR …`")
    for flag, wanted in (("--random-baseline", random_baseline), ("--zero-baseline", zero_baseline)):
        missing = [p for p in wanted if p not in summary["presets"]]
        if missing:  # before minutes of measuring the others
            raise ValueError(f"{flag} {missing[0]} has no runs to stand beside: {root} holds "
                             f"{', '.join(summary['presets'])}")
    policies = _kept_random_policies(earlier, summary)
    for preset in policies:
        if preset not in random_baseline:
            say(f"{preset}'s random policy kept from {out / 'sweep.json'} "
                f"(`--random-baseline {preset}` measures it again)")
    for preset in dict.fromkeys(random_baseline):
        policies[preset] = random_policy_return(_random_policy_config(summary["presets"][preset]), say=say)
    add_random_policies(summary, policies)
    zeros, moved = _earlier_zero_policies(earlier, summary)
    for preset in zeros:
        if preset not in zero_baseline:
            say(f"{preset}'s zero-action replay kept from {out / 'sweep.json'} (the same evaluations; "
                f"`--zero-baseline {preset}` measures it again)")
    for preset in moved:
        if preset not in zero_baseline:
            say(f"{preset}'s row stands on newer evaluations than {out / 'sweep.json'}'s zero-action replay: "
                "playing them again")
    for preset in dict.fromkeys([*zero_baseline, *moved]):
        zeros[preset] = measure_zero_policy(preset, summary["presets"][preset], say)
    add_zero_policies(summary, zeros)
    markdown = format_markdown(summary, notes=kept_notes(out / "sweep.md"))
    _write_file(out / "sweep.json", (json.dumps(summary, indent=1) + "\n").encode())
    _write_file(out / "sweep.md", markdown.encode())
    save_figure(plot_sweep(summary), out / "sweep.png")
    say(markdown)
    say(f"Wrote {out / 'sweep.png'}, {out / 'sweep.md'} and {out / 'sweep.json'}")
    try:
        files = write_tensorboard(root, tensorboard_dir)
    except ImportError as e:
        say(f"TensorBoard files skipped: {e}")
    else:
        logdir = Path(tensorboard_dir) if tensorboard_dir is not None else root / "tensorboard"
        say(f"TensorBoard: {len(files)} event file(s) updated; view with "
            f"`tensorboard --logdir {logdir}` (in Colab: %tensorboard --logdir {logdir})")
    return summary
