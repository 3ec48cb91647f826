"""`python -m planet_colab.bench precision`: does a reduced precision learn what fp32 learns? A controlled A/B.

Every variant trains the same initial weights (a fresh model from the run's seed, or the run's newest
checkpoint with --from-checkpoint) on the same batches of the run's stored episodes, with the same
dequantisation noise and latent samples; only the precision differs. A variant is `fp32`, `bf16` or
`fp16` (autocast; fp16 with its grad scaler), optionally with some of the model's parts kept in fp32:
`bf16+prior+reward` (parts: precision.MODEL_PARTS, or `all`), or `bf16-` for bf16 with nothing kept
in fp32 (the model's default parts are precision.FP32_PARTS). Prints each variant's losses and
gradient norm per window of steps, then the open-loop reward error of each trained model, measured in
fp32 on episodes held out of training (the last --held-out ones), and, last, one JSON object.

`--plans N` compares planning instead, with the run's newest checkpoint: from N beliefs (the newest
episode filtered in fp32), each precision's CEM plan (the config's sizes) is scored by its predicted
return under the fp32 model (mean over latent samples), beside fp32 planning with another seed (the
planner's own noise: the tolerance) and the paper's CEM (1000 × 10) as the stronger planner.

`--compare-runs A B … --out FIG.png` instead draws finished (or running) runs side by side: evaluation
return and the reward, observation and KL losses against episodes, and prints the table of both.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from planet_colab.__main__ import OneLineParser
from planet_colab.bench.openloop import open_loop_errors
from planet_colab.checkpoint import load_checkpoint
from planet_colab.config import Config, changes_from_args
from planet_colab.dataset import EpisodeDataset, collate_episode_batch
from planet_colab.losses import make_optimizer, train_step
from planet_colab.models import RSSMState, WorldModel, preprocess_obs
from planet_colab.planner import CEMPlanner, imagined_returns
from planet_colab.precision import FP32_PARTS, MODEL_PARTS, cpu_flags, resolve_precision
from planet_colab.run import Run
from planet_colab.seeding import torch_generator
from planet_colab.storage import episode_number

TERMS = ("obs_loss", "reward_loss", "kl", "grad_norm")


def parse_variant(text: str) -> tuple[str, frozenset[str]]:
    """'bf16+prior+reward' → ("bf16", {"prior", "reward"}); 'bf16' keeps the default FP32_PARTS, 'bf16-' none."""
    precision, *parts = text.split("+")
    if precision.endswith("-"):
        precision, keep = precision[:-1], frozenset()
        if parts:
            raise ValueError(f"variant {text!r}: 'P-' keeps no part in fp32, so it takes no '+part'")
    else:
        keep = FP32_PARTS
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"variant {text!r}: precision must be fp32, bf16 or fp16")
    if parts == ["all"]:
        return precision, frozenset(MODEL_PARTS)
    unknown = sorted(set(parts) - set(MODEL_PARTS))
    if unknown:
        raise ValueError(f"variant {text!r}: unknown part(s) {', '.join(unknown)}; parts: {', '.join(MODEL_PARTS)}, all")
    return precision, keep | frozenset(parts) if parts else keep


def train_variant(name: str, config: Config, run: Run, start: dict[str, Any], action_dim: int, steps: int,
                  last_train: int, report_every: int) -> tuple[WorldModel, list[dict[str, float]]]:
    """Train one variant from `start` (model and optimizer state) on the shared batches; losses per window."""
    precision, keep = parse_variant(name)
    config = config.replace(precision=precision)
    model = WorldModel(action_dim, config)
    model.load_state_dict(start["model"])
    model.fp32_parts = keep
    optimizer = make_optimizer(model, config)
    if start.get("optimizer") is not None:
        optimizer.load_state_dict(start["optimizer"])
    dataset = EpisodeDataset(run.storage, config.seq_len, config.batch_size * steps, seed=config.seed,
                             max_index=last_train)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, num_workers=0,
                        collate_fn=collate_episode_batch)
    generator = torch_generator(config.seed, "precision_ab")
    windows, window, t0 = [], {k: [] for k in TERMS}, time.perf_counter()
    for step, (obs_b, act_b, rew_b, _) in enumerate(loader, 1):
        out = train_step(model, optimizer, obs_b, act_b, rew_b, "cpu", config=config, generator=generator)
        for k in TERMS:
            window[k].append(out[k])
        if step % report_every == 0 or step == steps:
            means = {k: float(np.nanmean(v)) for k, v in window.items()}
            windows.append({"step": step, **means})
            print(f"{name:22s} step {step:5d}: obs {means['obs_loss']:7.3f}  reward {means['reward_loss']:6.4f}  "
                  f"kl {means['kl']:5.2f}  grad {means['grad_norm']:7.1f}  {time.perf_counter() - t0:5.0f} s",
                  flush=True)
            window = {k: [] for k in TERMS}
    return model, windows


def beliefs_along(model: WorldModel, episode: dict[str, np.ndarray], count: int, config: Config) -> RSSMState:
    """Posterior states (count, ·) at evenly spaced steps of `episode`, filtered in fp32 without noise."""
    obs = preprocess_obs(torch.from_numpy(episode["obs"]), config.bit_depth, noise=False)
    actions = torch.from_numpy(episode["action"]).float()
    picks = set(np.linspace(5, len(obs) - 1, count).astype(int).tolist())
    state, prev, kept = model.initial_state(1), torch.zeros(1, model.action_dim), []
    g = torch_generator(config.seed, "precision_beliefs")
    with torch.inference_mode():
        for t in range(len(obs)):
            state = model.obs_step(state, prev, model.encode(obs[t:t + 1]), g)[0]
            prev = actions[t:t + 1]
            if t in picks:
                kept.append(state)
    return RSSMState(torch.cat([s.deter for s in kept]), torch.cat([s.stoch for s in kept]))


def compare_plans(model: WorldModel, beliefs: RSSMState, config: Config, samples: int = 32) -> dict[str, Any]:
    """Each planner's plans from `beliefs`, scored by fp32 predicted return; first-action gaps to fp32's.

    fp16 is left out: on a CPU it is emulated (~50× slower) and no preset plans in it."""
    model.fp32_parts = frozenset(MODEL_PARTS)
    planners = {"fp32": (config, 0), "fp32 (other seed)": (config, 1), "bf16": (config.replace(precision="bf16"), 0),
                "fp32 paper CEM 1000x10": (config.replace(candidates=1000, optim_iters=10, top_k=100), 0)}
    n, result, plans = beliefs.deter.shape[0], {}, {}
    for name, (cfg, seed) in planners.items():
        t0 = time.perf_counter()
        planner = CEMPlanner.from_config(cfg, model.action_dim, precision=cfg.precision)
        plans[name] = planner.plan(model, beliefs, torch_generator(config.seed, "precision_plan", seed))
        seconds = (time.perf_counter() - t0) / n
        start = RSSMState(beliefs.deter.repeat_interleave(samples, 0), beliefs.stoch.repeat_interleave(samples, 0))
        with torch.inference_mode():
            returns = imagined_returns(model, start, plans[name].repeat_interleave(samples, 1),
                                       torch_generator(config.seed, "precision_score")).view(n, samples).mean(1)
        gap = (plans[name][0] - plans["fp32"][0]).abs().mean()
        result[name] = {"predicted_return": round(float(returns.mean()), 3),
                        "first_action_gap_to_fp32": round(float(gap), 4), "s_per_plan": round(seconds, 3)}
        print(f"{name:24s} predicted return {returns.mean():8.3f}  |first action − fp32's| {gap:.4f}  "
              f"{seconds:.2f} s per plan", flush=True)
    return result


CURVES = ("eval_mean", "reward_loss", "obs_loss", "kl_loss")


def compare_runs(run_dirs: list[Path], out: Path | None) -> dict[str, Any]:
    """Each run's metrics against episodes (printed as a table; drawn to `out` when given)."""
    from planet_colab.train import read_metrics

    runs = {}
    for run_dir in run_dirs:
        rows = read_metrics(run_dir)
        if not rows:
            raise ValueError(f"{run_dir} has no metrics yet")
        precision = Run.open(run_dir, new_ok=False).config.precision
        label = f"{run_dir.name} ({resolve_precision(precision, 'cpu')})"
        runs[label] = rows
    print(f"{'run':32s} {'iter':>4s} {'episodes':>8s} {'eval return':>16s} {'reward loss':>11s} "
          f"{'obs loss':>8s} {'KL loss':>7s}")
    for label, rows in runs.items():
        for row in rows:
            if (row["iteration"] + 1) % 5 == 0 or "eval_mean" in row:
                ev = f"{row['eval_mean']:7.1f} ± {row['eval_std']:5.1f}" if "eval_mean" in row else "—"
                print(f"{label:32s} {row['iteration'] + 1:4d} {row['episodes']:8d} {ev:>16s} "
                      f"{row['reward_loss']:11.3f} {row['obs_loss']:8.2f} {row['kl_loss']:7.2f}")
    if out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
        for ax, key in zip(axes, CURVES):
            for label, rows in runs.items():
                pts = [(r["episodes"], r[key], r.get("eval_std", 0.0)) for r in rows if key in r]
                x, y, err = (np.array(v, dtype=float) for v in zip(*pts)) if pts else ([], [], [])
                line, = ax.plot(x, y, marker="o" if key == "eval_mean" else None, ms=3, label=label)
                if key == "eval_mean" and len(x):
                    ax.fill_between(x, y - err, y + err, color=line.get_color(), alpha=0.2)
            ax.set_title(key.replace("_", " ").replace("eval mean", "evaluation return"))
            ax.set_xlabel("episodes")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        print(f"wrote {out}")
    return {label: [{k: r[k] for k in ("iteration", "episodes", *CURVES, "eval_std", "train_s") if k in r}
                    for r in rows] for label, rows in runs.items()}


def main(argv: list[str] | None = None) -> None:
    """Train each variant on the same batches from the same weights; print losses, open-loop error, JSON."""
    p = OneLineParser(prog="python -m planet_colab.bench precision")
    p.add_argument("--run-dir", type=Path, help="a run whose episodes/ to learn from (required but with --compare-runs)")
    p.add_argument("--variants", default="fp32,bf16-,bf16", help="comma-separated, e.g. fp32,bf16,bf16+all")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--report-every", type=int, default=50)
    p.add_argument("--held-out", type=int, default=2, help="newest episodes kept out of training (0: none)")
    p.add_argument("--from-checkpoint", action="store_true", help="start from the run's newest checkpoint")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--plans", type=int, default=0, help="compare planning from N beliefs instead of training")
    p.add_argument("--compare-runs", type=Path, nargs="+", metavar="RUN_DIR", help="draw runs' curves side by side")
    p.add_argument("--out", type=Path, help="with --compare-runs: the figure to write (.png)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    for name in ("steps", "report_every", "threads"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.compare_runs:
        curves = compare_runs(args.compare_runs, args.out)
        print(json.dumps({"bench": "precision", "mode": "compare_runs", "cpu_flags": sorted(
            cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}), "runs": curves}))
        return
    if args.run_dir is None:
        p.error("--run-dir is required (a run whose episodes to learn from)")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        parse_variant(v)  # refuse a misspelt variant before any training

    torch.set_num_threads(args.threads)
    run = Run.open(args.run_dir, new_ok=False)
    config = run.config.replace(**changes_from_args(args.overrides))
    paths = run.storage.episode_paths
    if len(paths) <= args.held_out:
        raise ValueError(f"{args.run_dir} has {len(paths)} episodes; need more than --held-out {args.held_out}")
    last_train = episode_number(paths[len(paths) - args.held_out - 1])
    action_dim = int(run.storage.load_cached(paths[0])["action"].shape[-1])
    torch.manual_seed(config.seed)
    start: dict[str, Any] = {"model": WorldModel(action_dim, config).state_dict(), "optimizer": None}
    if args.from_checkpoint:
        ckpt = load_checkpoint(args.run_dir, read_only=True)
        if ckpt is None:
            raise ValueError(f"{args.run_dir} has no checkpoint to start from")
        start = {"model": ckpt["model"], "optimizer": ckpt.get("optimizer")}
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16"})
    print(f"run {args.run_dir.name}: {len(paths)} episodes ({args.held_out} held out), B={config.batch_size} "
          f"L={config.seq_len}, {args.steps} steps per variant, start "
          f"{'checkpoint' if args.from_checkpoint else 'fresh'}; {args.threads} thread(s), CPU flags {' '.join(flags)}")

    if args.plans:
        if not args.from_checkpoint:
            raise ValueError("--plans needs a trained model: add --from-checkpoint")
        model = WorldModel(action_dim, config)
        model.load_state_dict(start["model"])
        result = compare_plans(model, beliefs_along(model, run.storage.load_episode(paths[-1]), args.plans, config),
                               config)
        print(json.dumps({"bench": "precision", "mode": "plans", "run": args.run_dir.name, "beliefs": args.plans,
                          "threads": args.threads, "cpu_flags": flags, "candidates": config.candidates,
                          "optim_iters": config.optim_iters, "results": result}))
        return
    held_out = [run.storage.load_episode(path) for path in paths[len(paths) - args.held_out:]] \
        or [run.storage.load_episode(paths[-1])]
    results = {}
    for name in variants:
        model, windows = train_variant(name, config, run, start, action_dim, args.steps, last_train,
                                       args.report_every)
        model.fp32_parts = frozenset(MODEL_PARTS)
        err = open_loop_errors(model, held_out, torch_generator(config.seed, "precision_eval"),
                               config=config.replace(precision="fp32"))
        results[name] = {"windows": windows, **err}
    print("\nvariant                last-window obs / reward / kl        open-loop |reward error| steps 1, 6, 12")
    base = results.get("fp32")
    for name, r in results.items():
        last = r["windows"][-1]
        e = r["open_loop_reward_abs_error_by_step"]
        rel = (f"  reward loss {last['reward_loss'] / base['windows'][-1]['reward_loss']:.2f}× fp32's"
               if base and name != "fp32" and base["windows"][-1]["reward_loss"] > 0 else "")
        print(f"{name:22s} {last['obs_loss']:7.3f} / {last['reward_loss']:6.4f} / {last['kl']:5.2f}        "
              f"{e[0]:.3f}, {e[min(5, len(e) - 1)]:.3f}, {e[-1]:.3f}{rel}")
    spread = next(iter(results.values()))["reward_abs_deviation_by_step"]
    print(f"{'true reward spread':22s} {'':30s}      {spread[0]:.3f}, {spread[min(5, len(spread) - 1)]:.3f}, {spread[-1]:.3f}")
    print(json.dumps({"bench": "precision", "run": args.run_dir.name, "steps": args.steps,
                      "from_checkpoint": args.from_checkpoint, "threads": args.threads, "cpu_flags": flags,
                      "batch_size": config.batch_size, "seq_len": config.seq_len,
                      "results": {k: {kk: (vv if not isinstance(vv, float) or math.isfinite(vv) else None)
                                      for kk, vv in v.items()} for k, v in results.items()}}))
