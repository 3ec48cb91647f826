"""A run directory as a short summary a person can scan: task, episodes, progress, last results, time.

Iterations are counted from 1 as the training log prints them; checkpoint files are numbered from 0
(`ckpt_000003.pt` holds the weights after the 4th iteration), which the summary says next to the name.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from planet_colab import safeio
from planet_colab.config import Config
from planet_colab.cost import format_duration


def _progress(config: Config, ckpt: dict | None, rows: list[dict[str, Any]]) -> str:
    saved = ckpt["iteration"] + 1 if ckpt else 0
    logged = rows[-1]["iteration"] + 1 if rows else 0
    text = f"{saved} of {config.total_iterations} iterations checkpointed"
    if logged > saved:
        text += f" ({logged} logged; a resume redoes iterations {saved + 1}–{logged})"
    if ckpt:
        text += f"; newest {Path(ckpt['file']).name} (after iteration {saved}; file numbers count from 0)"
    return text


def kl_itself(row: dict[str, Any]) -> str:
    """The text " [KL 0.54]" where the free-nats clamp lifted the row's KL term above the KL itself, else ""."""
    kl = row.get("kl")  # rows written before it was recorded have none
    if kl is None or not math.isfinite(kl) or abs(row["kl_loss"] - kl) < 0.005:
        return ""
    return f" [KL {kl:.2f}]"


def _last_results(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    if not rows:
        return [("last", "none yet (no iteration finished)"), ("evaluation", "none yet"), ("time", "none yet")]
    last = rows[-1]
    lines = [("last", f"iteration {last['iteration'] + 1}: collect return {last['collect_return']:.1f}, "
                      f"loss {last['loss']:.2f} (obs {last['obs_loss']:.2f}, reward {last['reward_loss']:.3f}, "
                      f"kl {last['kl_loss']:.2f}{kl_itself(last)})")]
    evals = [r for r in rows if "eval_mean" in r]
    if evals:
        best = max(evals, key=lambda r: r["eval_mean"])
        e = evals[-1]
        lines.append(("evaluation", f"{e['eval_mean']:.1f} ± {e['eval_std']:.1f} after iteration "
                                    f"{e['iteration'] + 1} (best {best['eval_mean']:.1f} after "
                                    f"{best['iteration'] + 1})"))
    else:
        lines.append(("evaluation", "none yet"))
    seconds = sum(r.get("seconds", 0.0) for r in rows)
    phases = ", ".join(f"{name} {sum(r.get(f'{name}_s', 0.0) for r in rows) / len(rows):.1f}"
                       for name in ("train", "collect", "eval"))
    lines.append(("time", f"{seconds / len(rows):.1f} s per iteration ({phases}); "
                          f"{format_duration(seconds)} logged in all"))
    return lines


def _set_aside(run_dir: Path) -> list[tuple[str, str]]:
    """A line for the damaged files moved to quarantine/ (never deleted: the user decides)."""
    folder = run_dir / "quarantine"
    names = sorted(safeio.listdir(folder)) if safeio.is_dir(folder) else []
    if not names:
        return [("quarantine", "nothing set aside")]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return [("quarantine", f"{len(names)} damaged file(s) set aside in {folder}: {shown}")]


def run_summary(run_dir: str | os.PathLike) -> str:
    """Aligned lines describing what `run_dir` holds; RunError when it is not a run directory."""
    from planet_colab.checkpoint import latest_checkpoint_info
    from planet_colab.lease import describe_holder
    from planet_colab.run import Run, read_metrics
    from planet_colab.storage import EpisodeStorage

    run_dir = Path(run_dir)
    config = Run.open(run_dir, new_ok=False).config  # RunError (one line) when it is not a run
    episodes = EpisodeStorage(run_dir / "episodes", read_only=True).num_episodes
    ckpt = latest_checkpoint_info(run_dir)
    rows = read_metrics(run_dir)
    seed = min(episodes, config.seed_episodes)
    lines = [
        ("run", str(run_dir)),
        ("task", f"{config.env_name}, {config.preset} preset, action repeat {config.action_repeat}"),
        ("episodes", f"{episodes} stored ({seed} random seed + {episodes - seed} collected), "
                     f"{config.episode_len} agent steps each"),
        *_set_aside(run_dir),
        ("progress", _progress(config, ckpt, rows)),
        *_last_results(rows),
        ("trainer", describe_holder(run_dir)),
    ]
    width = max(len(name) for name, _ in lines) + 2
    return "\n".join(f"{name:<{width}}{text}" for name, text in lines)
