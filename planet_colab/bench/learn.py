"""`python -m planet_colab.bench learn`: train (or resume) a run, then publish its learning curve.

Writes under --out (default docs/results): <preset>.png (noise-free evaluation return vs episodes and
env steps, mean ± std over the evaluation episodes, random policy on the same plot), <preset>.md
(table, config, machine, wall-clock split) and <preset>.json (the figures). Last line: the JSON.
A run still short of its iterations is published as in progress, saying how far it got; a long run is
published again after each session. What a person wrote into the md between hand_notes' markers
(analysis, why sizes changed) is kept by the next publish.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planet_colab.__main__ import OneLineParser
from planet_colab.bench.openloop import open_loop_errors
from planet_colab.config import Config, changes_from_args
from planet_colab.hand_notes import EMPTY_NOTES, kept_notes
from planet_colab.run import AgentParts, Run
from planet_colab.train import train_planner

PHASES = ("train_s", "collect_s", "eval_s", "io_s", "checkpoint_s")
# What each published task is measured against: (our target, label, a reported PlaNet figure or None).
# cartpole_swingup: PlaNet's 297 ± 39 at 100k env steps as reported in the CURL paper, Table 1.
TARGETS: dict[str, tuple[float, str, tuple[float, float, str] | None]] = {
    "pendulum": (-300.0, "target −300", None),
    "cartpole_swingup": (300.0, "target 300", (297.0, 39.0, "PlaNet at 100k steps (CURL, Table 1)")),
}


def random_baseline(config: Config, episodes: int) -> list[float]:
    """Returns of a uniform-random policy on `episodes` distinct evaluation seeds (sweep-report's own measure)."""
    from planet_colab.baselines import random_policy_return

    return random_policy_return(config, episodes)["returns"]


def machine() -> str:
    """One line describing this machine (CPU and the vector extensions that set its speed, cores, torch)."""
    from planet_colab.precision import cpu_flags, cpu_has_fast_bf16, cpu_model

    cpu, flags = cpu_model(), cpu_flags()
    if cpu_has_fast_bf16():
        vector = "native bf16 (AVX512-BF16/AMX)"
    else:
        vector = "AVX512, no bf16" if "avx512f" in flags else "AVX2, no AVX512" if "avx2" in flags else "no AVX2"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu} ({vector}), {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def summarize(rows: list[dict[str, Any]], random_returns: list[float], wall_clock_s: float) -> dict[str, Any]:
    """The published figures of a run: final evaluation, random baseline, curve."""
    evals = [r for r in rows if "eval_mean" in r]
    if not evals:
        raise ValueError("The run has no evaluation yet; train at least `eval_every` iterations")
    last = evals[-1]
    return {
        "episodes": int(last["episodes"]), "env_steps": int(last["env_steps"]),
        "eval_mean_return": float(last["eval_mean"]), "eval_std": float(last["eval_std"]),
        "eval_episodes": len(last.get("eval_returns", [])),
        "best_eval_mean_return": float(max(r["eval_mean"] for r in evals)),
        "random_mean_return": float(np.mean(random_returns)),
        "random_std": float(np.std(random_returns)),
        "wall_clock_s": float(wall_clock_s),
        "seconds_per_iteration": {k: float(np.mean([r.get(k, 0.0) for r in rows])) for k in PHASES},
        "curve": [[int(r["episodes"]), float(r["eval_mean"]), float(r["eval_std"])] for r in evals],
        "curve_env_steps": [int(r["env_steps"]) for r in evals],
        # Every collected episode's return (with exploration noise): learning between evaluations.
        "collect_curve": [[int(r["episodes"]), float(r["collect_return"])] for r in rows if "collect_return" in r],
        "iterations_done": int(rows[-1]["iteration"]) + 1, "episodes_stored": int(rows[-1]["episodes"]),
        # torch threads the iterations ran with (rows from before it was logged have none)
        "threads": ", ".join(map(str, sorted({int(r["threads"]) for r in rows if "threads" in r}))) or None,
    }


def plot(summary: dict[str, Any], title: str, path: Path) -> None:
    """Evaluation return ± std vs episodes (env steps on the top axis), random baseline as a band."""
    from matplotlib.figure import Figure

    curve = np.array(summary["curve"], dtype=float)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    collect = np.array(summary.get("collect_curve") or np.empty((0, 2)), dtype=float)
    if len(collect):
        ax.plot(collect[:, 0], collect[:, 1], ".-", color="0.6", lw=0.8, ms=3,
                label="collected episodes (exploration noise 0.3)")
    ax.plot(curve[:, 0], curve[:, 1], "o-", color="C0", label="PlaNet (noise-free evaluation)")
    ax.fill_between(curve[:, 0], curve[:, 1] - curve[:, 2], curve[:, 1] + curve[:, 2], color="C0", alpha=0.2)
    rnd, rsd = summary["random_mean_return"], summary["random_std"]
    ax.axhline(rnd, color="C3", ls="--", label="random policy")
    ax.axhspan(rnd - rsd, rnd + rsd, color="C3", alpha=0.1)
    target = TARGETS.get(summary.get("preset", ""))
    if target is not None:
        ax.axhline(target[0], color="0.5", ls=":", lw=1, label=target[1])
        if target[2] is not None:
            mean, std, label = target[2]
            ax.errorbar([100], [mean], yerr=[std], fmt="s", color="C2", capsize=3, label=label)
    ax.set_xlabel("collected episodes (seed + planner)")
    ax.set_ylabel("return (mean ± std over evaluation episodes)")
    steps_per_episode = summary["env_steps"] / max(summary["episodes"], 1)
    top = ax.secondary_xaxis("top", functions=(lambda e: e * steps_per_episode, lambda s: s / steps_per_episode))
    top.set_xlabel("environment steps")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _target_lines(summary: dict[str, Any], config: Config) -> list[str]:
    """What the result is measured against, when the task has a target (TARGETS)."""
    target = TARGETS.get(config.preset)
    if target is None:
        return []
    text = f"Target: {target[0]:g} mean evaluation return by 100 episodes."
    if target[2] is not None:
        text += f" Reported: {target[2][2]} {target[2][0]:g} ± {target[2][1]:g}."
    if summary.get("evaluated_when_published"):
        text += (" The last evaluation was made when publishing (the run stopped between its "
                 "scheduled evaluations), on the same seeds the loop would have used.")
    return [text, ""]


def _status_lines(summary: dict[str, Any], config: Config, run_dir: Path) -> list[str]:
    """Say so when the run has not reached its last iteration: a published result must not pass for final."""
    done = summary["iterations_done"]
    if done >= config.total_iterations:
        return []
    total_episodes = config.seed_episodes + config.total_iterations * config.collect_episodes
    return [f"**In progress:** published after iteration {done} of {config.total_iterations} "
            f"({summary['episodes_stored']} of {total_episodes} episodes); the figures below are what the run had "
            "reached. It resumes with `python -m planet_colab train --run-dir DIR`, and "
            "`python -m planet_colab.bench learn --no-train --run-dir DIR` publishes it again (DIR: the run "
            f"directory, `{run_dir.name}`).", ""]


def markdown(summary: dict[str, Any], config: Config, run_dir: Path, png: Path, notes: str = EMPTY_NOTES) -> str:
    """The results page: status, kept notes, curve, table, wall-clock split, config and machine."""
    lines = [f"# PlaNet on {config.env_name} from pixels ({config.preset} preset)", "",
             *_status_lines(summary, config, run_dir), notes, "",
             f"![learning curve]({png.name})", "",
             f"{'Final' if summary['iterations_done'] >= config.total_iterations else 'Latest'} noise-free "
             f"evaluation after {summary['episodes']} episodes "
             f"({summary['env_steps']:,} env steps): **{summary['eval_mean_return']:.1f} ± "
             f"{summary['eval_std']:.1f}** over {summary['eval_episodes']} episodes on distinct seeds "
             f"(best {summary['best_eval_mean_return']:.1f}); random policy "
             f"{summary['random_mean_return']:.1f} ± {summary['random_std']:.1f}.", "",
             *_target_lines(summary, config),
             "| episodes | env steps | eval return (mean) | std |", "|---:|---:|---:|---:|"]
    for (ep, mean, std), steps in zip(summary["curve"], summary["curve_env_steps"]):
        lines.append(f"| {ep} | {steps:,} | {mean:.1f} | {std:.1f} |")
    split = summary["seconds_per_iteration"]
    diag = summary.get("diagnostics")
    if diag:
        lines += ["", f"World model after iteration {diag['checkpoint_iteration'] + 1}, open loop on the last "
                  "stored episodes (5 frames filtered, then imagined from the recorded actions):", "",
                  "| imagined step | " + " | ".join(str(i + 1) for i in range(len(diag["open_loop_reward_abs_error_by_step"]))) + " |",
                  "|---" * (1 + len(diag["open_loop_reward_abs_error_by_step"])) + "|",
                  "| reward abs error | " + " | ".join(f"{v:.1f}" for v in diag["open_loop_reward_abs_error_by_step"]) + " |",
                  "| reward abs deviation (spread of the truth) | " + " | ".join(f"{v:.1f}" for v in diag["reward_abs_deviation_by_step"]) + " |",
                  "| pixel MSE | " + " | ".join(f"{v:.4f}" for v in diag["open_loop_obs_mse_by_step"]) + " |",
                  "", f"![reconstructions]({config.preset}_reconstructions.png)", "",
                  f"![open loop]({config.preset}_open_loop.png)"]
    threads = f"; the run trained with {summary['threads']} torch thread(s)" if summary.get("threads") else ""
    lines += ["", f"Wall-clock: {summary['wall_clock_s'] / 3600:.2f} h in iterations "
              f"({summary['wall_clock_s']:.0f} s). Seconds per iteration, mean: "
              + ", ".join(f"{k[:-2]} {v:.1f}" for k, v in split.items()) + ".", "",
              f"Machine where this page was made: {machine()}{threads}.", "",
              f"Run directory: `{run_dir.name}` (its name; a published page names no machine's paths).", "",
              "Config:", "", "```json", json.dumps(config.to_dict(), indent=1, sort_keys=True), "```", ""]
    return "\n".join(lines)


def model_diagnostics(run: Run, agent: AgentParts, out: Path, episodes: int = 5) -> dict[str, Any]:
    """Open-loop errors of the newest checkpoint on the last stored episodes, plus figures of one.

    Reward error per imagined step tells whether the planner's returns can be trusted over its
    horizon; it is what separates a model problem from a planner problem (see `bench oracle`).
    """
    from planet_colab import viz
    from planet_colab.imagination import open_loop_predict, reconstruct_episode
    from planet_colab.seeding import torch_generator

    config, model, ckpt = run.config, agent.model, agent.checkpoint
    model.eval()
    storage = run.storage
    gen = torch_generator(config.seed, "diagnostics")
    newest = [episode for _, episode in storage.newest_episodes(episodes)]
    errors = open_loop_errors(model, newest, gen, config=config)
    last = newest[-1]
    recon = reconstruct_episode(model, last["obs"], last["action"], config=config, generator=gen)
    viz.save_figure(viz.plot_reconstructions(last["obs"], recon, title="reconstructions (posterior)"),
                    out / f"{config.preset}_reconstructions.png")
    ol = open_loop_predict(model, last["obs"], last["action"], last["reward"], config=config, context=5,
                           horizon=config.horizon, start=max(0, min(30, len(last["reward"]) - 5 - config.horizon)),
                           generator=gen)
    viz.save_figure(viz.plot_open_loop(ol), out / f"{config.preset}_open_loop.png")
    return {"checkpoint_iteration": int(ckpt["iteration"]) if ckpt else None, **errors}


def evaluate_newest(run: Run, parts: AgentParts, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with a noise-free evaluation of `parts` (the newest checkpoint) added to its row, unless it has one.

    For publishing a run that stopped between evaluations; metrics.jsonl is left as it is.
    """
    from planet_colab.agent import evaluate

    done = int(parts.checkpoint["iteration"])
    rows = [dict(r) for r in rows if r["iteration"] <= done]
    if not rows or rows[-1]["iteration"] != done or "eval_mean" in rows[-1]:
        return rows
    config = run.config
    t0 = time.perf_counter()
    ev = evaluate(parts.model, parts.planner, config, num_episodes=config.eval_episodes,
                  seed_key=done, device=parts.device, progress=True)
    print(f"evaluated the checkpoint after iteration {done + 1}: {ev['mean']:.1f} ± {ev['std']:.1f} "
          f"({time.perf_counter() - t0:.0f} s)")
    rows[-1].update(eval_mean=float(ev["mean"]), eval_std=float(ev["std"]),
                    eval_returns=[float(x) for x in ev["returns"]], evaluated_when_published=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Train/resume, then write the curve, table and JSON; print the JSON last."""
    p = OneLineParser(prog="python -m planet_colab.bench learn")
    p.add_argument("--preset", help="for a new run (default pendulum); an existing run keeps its config.json")
    p.add_argument("--iterations", type=int)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("docs/results"),
                   help="where the page, figures and JSON go (default: docs/results of the current directory)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-train", action="store_true",
                   help="only publish what the run has so far, with its own config (no --set, no --iterations)")
    p.add_argument("--evaluate-now", action="store_true",
                   help="when the newest checkpoint has no evaluation yet, evaluate it now (published only)")
    args = p.parse_args(argv)

    changes = changes_from_args(args.overrides, args.iterations)
    if args.no_train:
        if changes:  # the page would show settings the run never had
            p.error("--no-train publishes the run as it is: --set and --iterations change a run; use "
                    f"`python -m planet_colab train --run-dir {args.run_dir}` with them first")
        run = Run.open(args.run_dir, args.preset, new_ok=False)
    else:
        run = Run.open(args.run_dir, args.preset, changes=changes)
        t0 = time.perf_counter()
        train_planner(run, progress=False)
        print(f"train_planner returned after {time.perf_counter() - t0:.0f} s in this process")
    config = run.config
    args.out.mkdir(parents=True, exist_ok=True)
    agent = run.restore_agent(torch.device("cpu"))  # one checkpoint for the page: diagnostics and evaluation
    diagnostics = model_diagnostics(run, agent, args.out)
    # A run still training may finish an iteration meanwhile: the page stops at the checkpoint it diagnosed.
    rows = [r for r in run.read_metrics() if r["iteration"] <= diagnostics["checkpoint_iteration"]]
    # Iterations redone after a kill are logged once (metrics.jsonl is rebuilt from the checkpoint).
    wall = float(sum(r.get("seconds", 0.0) + r.get("checkpoint_s", 0.0) for r in rows))
    if args.evaluate_now:
        rows = evaluate_newest(run, agent, rows)
    random_returns = random_baseline(config, config.eval_episodes)
    summary = summarize(rows, random_returns, wall)
    summary["preset"] = config.preset
    summary["evaluated_when_published"] = bool(rows and rows[-1].get("evaluated_when_published"))
    summary["diagnostics"] = diagnostics
    name = config.preset
    png = args.out / f"{name}.png"
    plot(summary, f"PlaNet, {config.env_name} from 64×64 pixels", png)
    md = args.out / f"{name}.md"
    md.write_text(markdown(summary, config, args.run_dir, png, notes=kept_notes(md)))
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n")
    figures = [png, args.out / f"{name}_reconstructions.png", args.out / f"{name}_open_loop.png"]
    print(f"Wrote {md}, {args.out / (name + '.json')}, " + ", ".join(map(str, figures)))
    print(f"final eval {summary['eval_mean_return']:.1f} ± {summary['eval_std']:.1f} after "
          f"{summary['episodes']} episodes; random {summary['random_mean_return']:.1f}")
    print(json.dumps(summary))
