"""Compare a sweep's runs: evaluation return against episodes, mean ± std across seeds per preset.

Each run's metrics.jsonl is the source of truth; everything here is derived from it and can be
written again at any time. `write_report(root)` writes `root/report/sweep.{png,md,json}` and one
TensorBoard event file per run (`root/tensorboard/<preset>/seed_<s>/`, so `%tensorboard --logdir
root/tensorboard` shows every run's losses and returns side by side). A run still in progress is
shown up to where it is. Every file is written whole under a temporary name and renamed, and an
event file is never appended to: a run with new rows gets a new event file that replaces its old one.
A published single-run result (bench learn's `<preset>.json`) can be drawn beside a preset's seeds as
its reference, and a hand-written block in the page (hand_notes' markers) survives a new report.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from planet_colab.config import Config
from planet_colab.hand_notes import EMPTY_NOTES, kept_notes
from planet_colab.safeio import retry_io, write_atomic
from planet_colab.words import published_path

__all__ = ["find_runs", "read_reference", "summarize", "plot_sweep", "format_markdown",
           "write_tensorboard", "write_report"]

TB_HINT = "pip install tensorboard  (Colab has it)"
# metrics.jsonl key -> TensorBoard tag; the step of every point is the number of episodes stored.
TB_TAGS = {"eval_mean": "return/eval", "collect_return": "return/collect", "loss": "loss/total",
           "obs_loss": "loss/obs", "reward_loss": "loss/reward", "kl_loss": "loss/kl",
           "grad_norm": "train/grad_norm", "seconds": "time/seconds_per_iteration"}


def find_runs(root: str | os.PathLike) -> dict[str, dict[int, Path]]:
    """{preset: {seed: run_dir}} for every `root/<preset>/seed_<s>` holding a config.json."""
    runs: dict[str, dict[int, Path]] = {}
    root = Path(root)
    if not root.is_dir():
        return runs
    for preset_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for run_dir in preset_dir.glob("seed_*"):
            seed = run_dir.name[len("seed_"):]
            if seed.isdigit() and (run_dir / "config.json").is_file():
                runs.setdefault(preset_dir.name, {})[int(seed)] = run_dir
    return {p: dict(sorted(seeds.items())) for p, seeds in runs.items()}


def _read_rows(run_dir: Path) -> list[dict[str, Any]]:
    from planet_colab.run import read_metrics

    return read_metrics(run_dir)


def _run_summary(run_dir: Path, root: Path) -> dict[str, Any]:
    config = Config.load(run_dir / "config.json")
    rows = _read_rows(run_dir)
    evals = [r for r in rows if "eval_mean" in r]
    return {"run_dir": published_path(run_dir, root), "iterations_done": len(rows),
            "total_iterations": config.total_iterations,
            "episodes_done": rows[-1]["episodes"] if rows else 0,
            "episodes": [r["episodes"] for r in evals],
            "eval_mean": [r["eval_mean"] for r in evals],
            "eval_std": [r["eval_std"] for r in evals]}


def _curve(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std (ddof 0) across the seeds that have reached each evaluated episode count."""
    at: dict[int, list[float]] = {}
    for run in runs.values():
        for episodes, value in zip(run["episodes"], run["eval_mean"]):
            at.setdefault(episodes, []).append(value)
    return [{"episodes": e, "mean": float(np.mean(v)), "std": float(np.std(v)), "seeds": len(v)}
            for e, v in sorted(at.items())]


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


def summarize(root: str | os.PathLike,
              references: Mapping[str, str | os.PathLike] | None = None) -> dict[str, Any]:
    """Every run's evaluations, each preset's across-seed curve and its reference run, as JSON-able data."""
    presets = {}
    for preset, seeds in find_runs(root).items():
        runs = {f"seed_{seed}": _run_summary(run_dir, Path(root)) for seed, run_dir in seeds.items()}
        presets[preset] = {"seeds": list(seeds), "runs": runs, "curve": _curve(runs)}
    for preset, path in (references or {}).items():
        if preset not in presets:
            raise ValueError(f"the reference for {preset!r} has no runs to stand beside: {root} holds "
                             f"{', '.join(presets) or 'no runs'}")
        presets[preset]["reference"] = read_reference(path)
    # Names, not this machine's paths: the page is published (run directories are relative to the root).
    return {"root": Path(os.path.abspath(root)).name, "std": "across seeds, ddof 0", "presets": presets}


def plot_sweep(summary: dict[str, Any]) -> Any:
    """Evaluation return against episodes: per preset a line at the seeds' mean, a band of ± std."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for i, (preset, data) in enumerate(summary["presets"].items()):
        curve = data["curve"]
        if not curve:
            continue
        color = f"C{i % 10}"
        x = np.array([c["episodes"] for c in curve])
        mean = np.array([c["mean"] for c in curve])
        std = np.array([c["std"] for c in curve])
        n = len(data["seeds"])
        ax.plot(x, mean, color=color, label=f"{preset} (mean of {n} seed{'s' if n != 1 else ''} ± std)")
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        # A point that fewer seeds have reached yet is a mean over a different group: drawn hollow.
        full = np.array([c["seeds"] == n for c in curve])
        ax.plot(x[full], mean[full], linestyle="none", marker="o", markersize=4, color=color)
        if not full.all():
            ax.plot(x[~full], mean[~full], linestyle="none", marker="o", markersize=5, markerfacecolor="white",
                    color=color, label=f"{preset}: fewer seeds so far (see the table)")
        for run in data["runs"].values():  # each seed thin, so a lagging run is visible
            ax.plot(run["episodes"], run["eval_mean"], color=color, alpha=0.35, linewidth=0.8)
        if "reference" in data:  # no band: its std is over evaluation episodes, not across seeds
            ref = data["reference"]
            ax.plot([c["episodes"] for c in ref["curve"]], [c["mean"] for c in ref["curve"]], color=color,
                    linestyle="--", marker="s", markersize=3,
                    label=f"{preset}: one published run ({Path(ref['file']).name})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("episodes collected")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"{Path(summary['root']).name}: noise-free evaluation return across seeds")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _pm(mean: float | None, std: float | None) -> str:
    return "–" if mean is None else f"{mean:.1f} ± {std:.1f}"


def _status(summary: dict[str, Any]) -> str:
    """Which runs are finished, which are on their way, which have no iteration yet (queued or starting)."""
    runs = [(f"{preset}/{seed}", run) for preset, data in summary["presets"].items()
            for seed, run in data["runs"].items()]
    finished = [name for name, run in runs if run["iterations_done"] >= run["total_iterations"]]
    if len(finished) == len(runs):
        return f"All {len(runs)} run{'s' if len(runs) != 1 else ''} finished their iterations."
    going = [f"{name} at iteration {run['iterations_done']} of {run['total_iterations']}"
             for name, run in runs if 0 < run["iterations_done"] < run["total_iterations"]]
    waiting = [name for name, run in runs if run["iterations_done"] == 0]
    parts = going + ([f"no iteration yet: {', '.join(waiting)}"] if waiting else [])
    return (f"**In progress:** {len(finished)} of {len(runs)} runs finished; {'; '.join(parts)}. The same "
            "`python -m planet_colab sweep …` command resumes them, and `sweep-report` makes this page again.")


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


def format_markdown(summary: dict[str, Any], notes: str = EMPTY_NOTES, png: str = "sweep.png") -> str:
    """The status, kept notes, curve, runs table and, per preset, evaluation return (mean ± std across seeds)."""
    lines = [f"# Sweep report: `{summary['root']}`", "", _status(summary), "",
             notes, "", f"![evaluation return across seeds]({png})", "",
             "Noise-free evaluation return: each run's mean ± std over its evaluation episodes; per "
             "preset, the mean ± std (ddof 0) across the seeds that reached that number of episodes. "
             "A run still in progress counts up to where it is."
             + (" A published run's ± is over its own evaluation episodes."
                if any("reference" in d for d in summary["presets"].values()) else ""), "",
             "| run | iterations | episodes | last eval | best eval |", "|---|---|---|---|---|"]
    for preset, data in summary["presets"].items():
        for seed, run in data["runs"].items():
            k = int(np.argmax(run["eval_mean"])) if run["eval_mean"] else None
            last = _pm(run["eval_mean"][-1], run["eval_std"][-1]) if k is not None else "–"
            best = (f"{_pm(run['eval_mean'][k], run['eval_std'][k])} at {run['episodes'][k]}"
                    if k is not None else "–")
            lines.append(f"| {preset}/{seed} | {run['iterations_done']} of {run['total_iterations']} "
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


def write_report(root: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None,
                 say: Callable[[str], None] = print, out_dir: str | os.PathLike | None = None,
                 references: Mapping[str, str | os.PathLike] | None = None) -> dict[str, Any]:
    """Write sweep.{png,md,json} (to out_dir, default root/report) and the TensorBoard files; return the summary."""
    from planet_colab.frames import save_figure

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"the sweep's root (--root) {root} "
                         f"{'is a file, not a directory' if root.exists() else 'does not exist'}")
    out = Path(out_dir) if out_dir is not None else root / "report"
    for flag, folder in (("--out", out), ("--tensorboard-dir", tensorboard_dir)):
        existing = next((p for p in (Path(folder), *Path(folder).parents) if p.exists()), None) \
            if folder is not None else None
        if existing is not None and not existing.is_dir():
            raise ValueError(f"{flag} {folder} cannot be a folder: {existing} is a file")
    summary = summarize(root, references)  # the one scan of the root's runs, after the cheap checks
    if not summary["presets"]:
        raise ValueError(f"{root} holds no runs (expected {root}/<preset>/seed_<s>/config.json); "
                         "start them with `python -m planet_colab sweep --root DIR …`")
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
