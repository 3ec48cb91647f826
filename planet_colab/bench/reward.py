"""Does a run's model see its reward, and is the reward the agent's? `python -m planet_colab.bench reward --run-dir DIR`.

For a task that falls short of its target (issue 24, item 4), three measurements on a trained run,
read only (nothing is written but `--figure`):

- **The reward head on stored episodes.** The newest `--episodes` episodes filtered with the newest
  checkpoint (fp32, no dequantisation noise): the mean predicted reward at steps whose true reward is
  above `--threshold` (default: the mean reward of those episodes) and at the others, beside the true
  means, and their correlation. A head that predicts the data's mean everywhere cannot tell the
  planner anything; the state does not hold what the reward depends on.
- **Imagined reward ahead of reward onsets.** At each onset (a step above the threshold after at least
  `--quiet` steps below it), 5 real frames are filtered ending `lead` steps before the onset, then the
  recorded actions are imagined for the planning horizon: the predicted reward summed over it against
  the true sum. Given the very actions that earned the reward, does the model see it coming? If not,
  no planner can find it (a model problem); if it does and the agent still misses, look at the planner
  (`bench warm`).
- **A zero-action policy on the run's evaluation seeds** (`--zero-policy`): every evaluation in
  metrics.jsonl played again with actions of zero, on the same environment seeds (`agent.evaluate`'s
  (seed, "eval", iteration, k)). Where the environment hands out reward by itself (cup_catch sometimes
  starts with the ball in the cup), the agent's evaluation is only worth what it earns above this
  (baselines.zero_policy_returns; sweep-report's `--zero-baseline` puts it in the benchmark table).

Prints readable lines, then one JSON object.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from planet_colab.__main__ import OneLineParser
from planet_colab.config import Config

CONTEXT = 5  # real frames filtered before imagining, as bench openloop and bench learn do


def head_split(model: Any, episodes: Sequence[dict[str, np.ndarray]], config: Config,
               threshold: float) -> dict[str, Any]:
    """Mean predicted and true reward above and at-or-below `threshold`, and the correlation, over episodes."""
    from planet_colab.imagination import posterior_rewards
    from planet_colab.seeding import torch_generator

    predicted, true = [], []
    generator = torch_generator(config.seed, "bench_reward")
    for episode in episodes:
        pred = posterior_rewards(model, episode["obs"], episode["action"], config=config, generator=generator)
        predicted.append(pred)
        true.append(episode["reward"][:len(pred)].astype(np.float32))
    pred, real = np.concatenate(predicted), np.concatenate(true)
    high = real > threshold
    if high.all() or not high.any():
        raise ValueError(f"every stored step's reward is on one side of the threshold {threshold:g}: "
                         "nothing to split (give --threshold)")
    corr = float(np.corrcoef(pred, real)[0, 1]) if pred.std() > 0 else float("nan")
    return {"threshold": round(float(threshold), 4), "steps_above": int(high.sum()), "steps_below": int((~high).sum()),
            "predicted_above": round(float(pred[high].mean()), 4), "true_above": round(float(real[high].mean()), 4),
            "predicted_below": round(float(pred[~high].mean()), 4), "true_below": round(float(real[~high].mean()), 4),
            "correlation": round(corr, 3)}


def onsets(reward: np.ndarray, threshold: float, quiet: int) -> list[int]:
    """Steps whose reward is above `threshold` after at least `quiet` steps at or below it."""
    above = reward > threshold
    return [t for t in range(quiet, len(reward)) if above[t] and not above[t - quiet:t].any()]


def ahead_of_onsets(model: Any, episodes: Sequence[dict[str, np.ndarray]], config: Config, threshold: float,
                    quiet: int, leads: Sequence[int]) -> dict[str, Any]:
    """Per lead: predicted and true reward summed over the horizon imagined from `lead` steps before each onset."""
    from planet_colab.imagination import open_loop_predict
    from planet_colab.seeding import torch_generator

    horizon, result = config.horizon, {}
    generator = torch_generator(config.seed, "bench_reward_ahead")
    found = []  # each episode's onsets, found once rather than once per lead
    for episode in episodes:
        reward = episode["reward"].astype(np.float32)
        found.append((episode, reward, onsets(reward, threshold, quiet)))
    for lead in leads:
        pairs = []
        for episode, reward, starts in found:
            for t in starts:
                # The last filtered frame is o_{t-lead}; the imagined steps predict r_{t-lead} onwards.
                start = t - lead - CONTEXT + 1
                if start < 0 or start + CONTEXT + horizon > len(reward):
                    continue
                ol = open_loop_predict(model, episode["obs"], episode["action"], reward, config=config,
                                       context=CONTEXT, horizon=horizon, start=start, generator=generator)
                pairs.append((float(ol["pred_reward"].sum()), float(ol["real_reward"].sum())))
        if not pairs:
            result[str(lead)] = {"onsets": 0}
            continue
        p = np.array(pairs)
        corr = float(np.corrcoef(p[:, 0], p[:, 1])[0, 1]) if len(p) > 1 and p[:, 0].std() > 0 and p[:, 1].std() > 0 \
            else float("nan")
        result[str(lead)] = {"onsets": len(p), "predicted_sum": round(float(p[:, 0].mean()), 3),
                             "true_sum": round(float(p[:, 1].mean()), 3), "correlation": round(corr, 3)}
    return result


def zero_policy_on_eval_seeds(config: Config, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each evaluated row's returns beside a zero-action policy's on the same environment seeds."""
    from planet_colab.baselines import zero_policy_returns
    from planet_colab.env import make_env_from_config

    env = make_env_from_config(config)
    try:
        return [{"iteration": int(row["iteration"]), "episodes": int(row["episodes"]),
                 "agent": [round(float(x), 1) for x in row["eval_returns"]],
                 "zero": [round(x, 1) for x in zero_policy_returns(config, int(row["iteration"]),
                                                                   len(row["eval_returns"]), env)]}
                for row in rows if "eval_returns" in row]
    finally:
        env.close()


def save_figure(model: Any, episodes: Sequence[dict[str, np.ndarray]], config: Config, threshold: float,
                path: Path) -> None:
    """Real and decoded posterior frames around the first onset of the most rewarded episode."""
    from planet_colab import viz
    from planet_colab.imagination import reconstruct_episode
    from planet_colab.seeding import torch_generator

    episode = max(episodes, key=lambda e: float(e["reward"].sum()))
    reward = episode["reward"]
    first = int(np.argmax(reward > threshold)) if (reward > threshold).any() else len(reward) // 2
    start = max(0, min(first - 8, len(reward) - 16))  # 8 frames, every other step, the onset inside
    picks = np.arange(start, min(start + 16, len(reward)), 2)
    recon = reconstruct_episode(model, episode["obs"], episode["action"], config=config,
                                generator=torch_generator(config.seed, "bench_reward_figure"))
    viz.save_figure(viz.plot_reconstructions(episode["obs"][picks], recon[picks], num=len(picks),
                                             title=f"posterior around the first reward (step {first})"), path)


def main(argv: list[str] | None = None) -> None:
    """Measure a run's reward head, its foresight of reward onsets and (optionally) a zero policy; print a JSON line."""
    p = OneLineParser(prog="python -m planet_colab.bench reward", description=__doc__)
    p.add_argument("--run-dir", type=Path, required=True, help="a trained run (read only)")
    p.add_argument("--episodes", type=int, default=30, help="newest stored episodes to measure on")
    p.add_argument("--threshold", type=float, help="a step is rewarded above it (default: the mean reward)")
    p.add_argument("--quiet", type=int, default=6, help="steps at or below the threshold before an onset")
    p.add_argument("--leads", type=int, nargs="+", default=[1, 4, 8],
                   help="imagined steps between the last filtered frame and the onset")
    p.add_argument("--zero-policy", action="store_true",
                   help="play every evaluation's seeds again with zero actions (physics and rendering)")
    p.add_argument("--figure", type=Path, help="save real and decoded frames around a reward onset here (.png)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.episodes < 1 or args.quiet < 1 or min(args.leads) < 0:
        p.error("--episodes and --quiet must be positive, --leads at least 0")

    from planet_colab.run import Run
    from planet_colab.threads import apply_threads

    apply_threads(args.threads)
    started = time.perf_counter()
    run = Run.open(args.run_dir, new_ok=False)
    config = run.config.replace(precision="fp32")
    parts = run.restore_agent(torch.device("cpu"))
    model = parts.model.eval()
    episodes = [episode for _, episode in run.storage.newest_episodes(args.episodes)]
    threshold = (float(np.mean(np.concatenate([e["reward"] for e in episodes])))
                 if args.threshold is None else args.threshold)
    iteration = int(parts.checkpoint["iteration"]) + 1
    print(f"{run.run_dir} after iteration {iteration}: {len(episodes)} newest episodes, threshold {threshold:g}")

    head = head_split(model, episodes, config, threshold)
    print(f"reward head: predicts {head['predicted_above']:.3f} where the reward was {head['true_above']:.3f} "
          f"({head['steps_above']} steps above the threshold), {head['predicted_below']:.3f} where it was "
          f"{head['true_below']:.3f} ({head['steps_below']} steps); correlation {head['correlation']:.2f}")
    ahead = ahead_of_onsets(model, episodes, config, threshold, args.quiet, args.leads)
    for lead, r in ahead.items():
        if r["onsets"]:
            print(f"onset {lead} step(s) after the last filtered frame: imagined {r['predicted_sum']:.2f} against "
                  f"{r['true_sum']:.2f} earned over {config.horizon} steps ({r['onsets']} onsets, correlation "
                  f"{r['correlation']:.2f})")
        else:
            print(f"onset {lead} step(s) after the last filtered frame: no onset with room for "
                  f"{CONTEXT} + {config.horizon} steps")
    summary: dict[str, Any] = {"bench": "reward", "run_dir": str(run.run_dir), "iteration": iteration,
                               "episodes": len(episodes), "horizon": config.horizon, "head": head,
                               "ahead_of_onsets": ahead}
    if args.zero_policy:
        zero = zero_policy_on_eval_seeds(config, run.read_metrics())
        for r in zero:
            print(f"evaluation after {r['episodes']} episodes: agent {np.mean(r['agent']):.1f}, zero actions on "
                  f"the same seeds {np.mean(r['zero']):.1f}")
        summary["zero_policy"] = zero
    if args.figure is not None:
        save_figure(model, episodes, config, threshold, args.figure)
        print(f"figure: {args.figure}")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))
