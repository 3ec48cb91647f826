"""`python -m planet_colab.bench openloop`: how far ahead a world model trained offline predicts reward.

Trains a fresh model for --steps gradient steps on the first --train-episodes stored episodes of a run
(the run's config, with --set overrides), then measures the open-loop reward error per imagined step
on the held-out episodes: 5 real frames filtered, then the recorded actions imagined for `horizon`
steps, as the planner does. An A/B for loss settings (free nats, KL balance, train steps) without the
whole online loop; it trains on the CPU. Last line: JSON with the error and the true reward's spread per step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from planet_colab.__main__ import OneLineParser
from planet_colab.config import Config, changes_from_args
from planet_colab.dataset import EpisodeDataset, collate_episode_batch
from planet_colab.losses import make_optimizer, train_step
from planet_colab.models import WorldModel
from planet_colab.run import Run
from planet_colab.seeding import torch_generator
from planet_colab.storage import episode_number

CONTEXT = 5  # real frames filtered before imagining


def open_loop_errors(model: WorldModel, episodes: Sequence[dict[str, np.ndarray]], generator: torch.Generator,
                     *, config: Config, horizon: int | None = None, every: int = 10) -> dict[str, list[float]]:
    """Mean |imagined − real| reward and the true reward's spread per imagined step, plus pixel MSE.

    `horizon` imagined steps (default config.horizon) after CONTEXT filtered ones, a window every `every` steps.
    """
    from planet_colab.imagination import open_loop_predict

    horizon = config.horizon if horizon is None else horizon
    model.eval()
    reward_err, real_abs, obs_mse = [], [], []
    for ep in episodes:
        for start in range(0, len(ep["reward"]) - CONTEXT - horizon + 1, every):
            r = open_loop_predict(model, ep["obs"], ep["action"], ep["reward"], config=config, context=CONTEXT,
                                  horizon=horizon, start=start, generator=generator)
            reward_err.append(np.abs(r["pred_reward"] - r["real_reward"]))
            real_abs.append(np.abs(r["real_reward"] - r["real_reward"].mean()))
            obs_mse.append(r["mse"][CONTEXT:])
    if not reward_err:
        raise ValueError(f"no episode is long enough for {CONTEXT} context + {horizon} imagined steps")
    return {"open_loop_reward_abs_error_by_step": np.mean(reward_err, 0).round(2).tolist(),
            "reward_abs_deviation_by_step": np.mean(real_abs, 0).round(2).tolist(),
            "open_loop_obs_mse_by_step": np.mean(obs_mse, 0).round(5).tolist()}


def main(argv: list[str] | None = None) -> None:
    """Train a fresh model offline on a run's episodes and print its open-loop reward error."""
    p = OneLineParser(prog="python -m planet_colab.bench openloop")
    p.add_argument("--run-dir", type=Path, required=True, help="a run whose episodes/ to learn from")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--train-episodes", type=int, default=80, help="the rest are held out")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)

    changes = changes_from_args(args.overrides)
    run = Run.open(args.run_dir, new_ok=False)
    config, storage = run.config.replace(**changes), run.storage  # the A/B's changes stay out of the run
    paths = storage.episode_paths
    if len(paths) <= args.train_episodes:
        raise ValueError(f"{args.run_dir} has {len(paths)} episodes; need more than --train-episodes "
                         f"{args.train_episodes} so some are held out")
    last_train = episode_number(paths[args.train_episodes - 1])
    dataset = EpisodeDataset(storage, config.seq_len, config.batch_size * args.steps, seed=config.seed,
                             max_index=last_train)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, num_workers=0,
                        collate_fn=collate_episode_batch)
    action_dim = int(storage.load_cached(paths[0])["action"].shape[-1])
    torch.manual_seed(config.seed)
    model = WorldModel(action_dim, config)
    optimizer = make_optimizer(model, config)
    generator = torch_generator(config.seed, "openloop")
    t0 = time.perf_counter()
    for step, (obs_b, act_b, rew_b, _) in enumerate(loader, 1):
        out = train_step(model, optimizer, obs_b, act_b, rew_b, "cpu", config=config, generator=generator)
        if step % 100 == 0 or step == args.steps:
            print(f"step {step}/{args.steps}: obs {out['obs_loss']:.2f} reward {out['reward_loss']:.3f} "
                  f"kl {out['kl']:.2f}  {time.perf_counter() - t0:.0f} s", flush=True)
    held_out = [storage.load_episode(path) for path in paths[args.train_episodes:]]
    result = open_loop_errors(model, held_out, torch_generator(config.seed, "openloop_eval"), config=config)
    print("imagined step        " + " ".join(f"{k + 1:5d}" for k in range(config.horizon)))
    print("reward abs error     " + " ".join(f"{v:5.2f}" for v in result["open_loop_reward_abs_error_by_step"]))
    print("true reward spread   " + " ".join(f"{v:5.2f}" for v in result["reward_abs_deviation_by_step"]))
    summary: dict[str, Any] = {"bench": "openloop", "steps": args.steps, "train_episodes": args.train_episodes,
                               "held_out_episodes": len(held_out), "overrides": changes,
                               "train_s": round(time.perf_counter() - t0, 1), **result}
    print(json.dumps(summary))
