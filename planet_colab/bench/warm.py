"""Warm-started CEM against the paper's, from a trained model: `python -m planet_colab.bench warm --run-dir DIR`.

Filters a stored episode of the run with its newest checkpoint (fp32, no noise) and walks `--steps`
consecutive beliefs of it. At each, every variant plans: cold ones from N(0, 1), warm ones from their
own previous plan (planner.warm_start, as the agent does with `plan_warm_start`). Each plan is scored
by the model's predicted return from that belief (fp32, mean over `--samples` latent draws, the same
draws for every variant), and compared with the paper's CEM (1000 × 10, top 100) from the same
beliefs. Variants: `--variants J×I[w]` items, e.g. `500x5 500x2w 250x3w` (w: warm-started).
Prints a line per variant, then one JSON object.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from planet_colab.__main__ import OneLineParser

PAPER = "1000x10"


def parse_variant(text: str) -> tuple[int, int, bool]:
    """'500x2w' -> (500 candidates, 2 refits, warm)."""
    body, warm = (text[:-1], True) if text.endswith("w") else (text, False)
    try:
        candidates, iters = (int(x) for x in body.lower().split("x"))
    except ValueError:
        raise ValueError(f"a variant is CANDIDATESxREFITS with an optional w (warm), e.g. 500x2w; "
                         f"got {text!r}") from None
    if candidates < 10 or iters < 1:
        raise ValueError(f"variant {text!r}: at least 10 candidates and 1 refit")
    return candidates, iters, warm


def walk(model: Any, beliefs: Any, config: Any, variant: tuple[int, int, bool], samples: int) -> dict[str, Any]:
    """Plan at each consecutive belief with one variant; the predicted return of each plan and CPU s per plan."""
    from planet_colab.models import RSSMState
    from planet_colab.planner import CEMPlanner, imagined_returns, warm_start
    from planet_colab.seeding import torch_generator

    candidates, iters, warm = variant
    planner = CEMPlanner.from_config(config.replace(candidates=candidates, optim_iters=iters,
                                                    top_k=max(1, candidates // 10)), model.action_dim)
    start, returns, cpu = None, [], 0.0
    for t in range(beliefs.deter.shape[0]):
        belief = RSSMState(beliefs.deter[t:t + 1], beliefs.stoch[t:t + 1])
        c0 = time.process_time()
        plan = planner.plan(model, belief, torch_generator(config.seed, "warm_bench", t), start=start)
        cpu += time.process_time() - c0
        if warm:
            start = warm_start(plan, config.plan_warm_std)
        rows = RSSMState(belief.deter.repeat(samples, 1), belief.stoch.repeat(samples, 1))
        with torch.inference_mode():
            score = imagined_returns(model, rows, plan.repeat(1, samples, 1),
                                     torch_generator(config.seed, "warm_score", t))
        returns.append(float(score.mean()))
    return {"returns": returns, "cpu_s_per_plan": cpu / len(returns)}


def main(argv: list[str] | None = None) -> None:
    """Compare the variants' plans along one stored episode; print lines and a JSON line."""
    p = OneLineParser(prog="python -m planet_colab.bench warm", description=__doc__)
    p.add_argument("--run-dir", type=Path, required=True, help="a trained run (read only: nothing is written)")
    p.add_argument("--variants", nargs="+", default=["500x5", "500x3w", "500x2w", "250x3w", "250x2w"])
    p.add_argument("--steps", type=int, default=30, help="consecutive beliefs planned from")
    p.add_argument("--samples", type=int, default=32, help="latent draws per plan's score")
    p.add_argument("--episode", type=int, help="episode number (default: the newest stored)")
    p.add_argument("--warm-std", type=float,
                   help="std of a warm start's shifted steps (default: the run's plan_warm_std)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.steps < 1 or args.samples < 1:
        p.error("--steps and --samples must be positive")
    variants = {name: parse_variant(name) for name in [PAPER, *args.variants]}

    from planet_colab.bench.precision import beliefs_along
    from planet_colab.models import RSSMState
    from planet_colab.run import Run
    from planet_colab.threads import apply_threads

    apply_threads(args.threads)
    run = Run.open(args.run_dir, new_ok=False)
    config = run.config.replace(precision="fp32", **({} if args.warm_std is None else {"plan_warm_std": args.warm_std}))
    parts = run.restore_agent()
    model = parts.model.eval()
    paths = run.storage.episode_paths
    path = run.storage.path_for(args.episode) if args.episode else paths[-1]
    episode = run.storage.load_episode(path)
    count = len(episode["reward"]) - 5
    every = beliefs_along(model, episode, count, config)  # steps 5 … end, one belief each
    first = max(0, min(count - args.steps, count // 3))  # past the start, where the task is under way
    beliefs = RSSMState(every.deter[first:first + args.steps], every.stoch[first:first + args.steps])
    load = os.getloadavg()[0]
    print(f"{run.run_dir} after iteration {parts.checkpoint['iteration'] + 1}, {path.name}, "
          f"{beliefs.deter.shape[0]} consecutive beliefs, fp32, {args.threads} thread(s), load {load:.2f}")
    results = {name: walk(model, beliefs, config, v, args.samples) for name, v in variants.items()}
    paper = torch.tensor(results[PAPER]["returns"])
    summary = {}
    for name, r in results.items():
        ret = torch.tensor(r["returns"])
        gap = ret - paper
        summary[name] = {"predicted_return": round(float(ret.mean()), 3),
                         "minus_paper_mean": round(float(gap.mean()), 3),
                         "minus_paper_worst": round(float(gap.min()), 3),
                         "cpu_s_per_plan": round(r["cpu_s_per_plan"], 3)}
        print(f"{name:8s} predicted return {ret.mean():8.3f}  − paper's: mean {gap.mean():+7.3f}, worst "
              f"{gap.min():+7.3f}  {r['cpu_s_per_plan']:.3f} s CPU per plan")
    print(json.dumps({"bench": "warm", "run_dir": str(run.run_dir), "episode": path.name,
                      "iteration": parts.checkpoint["iteration"], "steps": beliefs.deter.shape[0],
                      "plan_warm_std": config.plan_warm_std, "threads": args.threads,
                      "load1": round(os.getloadavg()[0], 2), "variants": summary}))
