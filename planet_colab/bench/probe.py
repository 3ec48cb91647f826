"""Does a run's latent state know the task's physical state? `python -m planet_colab.bench probe --run-dir DIR`.

For a task that falls short of its target (issue 24, item 4): a model that never learns where the
ball is cannot plan a catch, however good its planner. This asks the state directly, read only:

1. **The true state of every stored step.** Each of the newest `--episodes` episodes is played again
   in its environment from its own seed (the seed episodes' (seed, "seed_episode", n) and the
   collected ones' (seed, "collect", iteration, k), as the loop drew them) with its stored actions,
   and every replayed frame is checked against the stored one: an episode whose frames differ (another
   MuJoCo, a damaged file) is left out, so each label belongs to the frame it is paired with. The
   labels are the task's own low-dimensional state (`env.physical_state`: a suite task's observation
   dict, e.g. cup_catch's `position` = cup x, cup z, ball x, ball z; gymnasium's state vector).
2. **The state the model filters from those frames**: deterministic state and posterior mean, with the
   newest checkpoint (fp32, no dequantisation noise); the encoder's embedding of each frame alone (does
   the encoder see it, and the posterior leave it out?); and the state filtered with the run's untrained
   initial weights, a control for what a random recurrent network's features hold already.
3. **A linear (ridge) probe** per coordinate, fit on all but the newest `--held-out` episodes (its
   penalty picked on the last fifth of those) and scored on the held-out ones: R² (1 = the state
   holds it exactly, 0 = no better than the held-out mean), mean |error| beside the coordinate's spread.

Prints a table, then one JSON object.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from planet_colab.__main__ import OneLineParser, _positive_int
from planet_colab.config import Config

PENALTIES = (0.1, 1.0, 10.0, 100.0, 1000.0)  # ridge penalties tried, on standardised features
REPLAY_TOLERANCE = 2.0  # mean |difference| (of 255) a replayed frame may have from the stored one


def episode_env_seed(run: Any, number: int) -> int:
    """The environment seed stored episode `number` of `run` was played from, as the loop drew it."""
    from planet_colab.agent import collect_env_seed
    from planet_colab.env import seed_episode_env_seed

    origin = run.collected_by(number)
    return seed_episode_env_seed(run.config.seed, number) if origin is None else collect_env_seed(run.config, *origin)


def replay_states(env: Any, env_seed: int, episode: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
    """The physical state at each stored frame, by name ((T, n) arrays), and the worst frame's mean |difference|.

    Stops at the first frame further than REPLAY_TOLERANCE from the stored one (the difference says so).
    """
    from planet_colab.env import physical_state

    frames, actions = episode["obs"], episode["action"]
    states: dict[str, list[np.ndarray]] = {}
    worst = 0.0
    obs, _ = env.reset(seed=env_seed)
    for t in range(len(frames)):
        if t:
            obs, *_ = env.step(actions[t - 1])
        worst = max(worst, float(np.abs(obs.astype(np.int16) - frames[t]).mean()))
        if worst > REPLAY_TOLERANCE:
            break
        for key, value in physical_state(env).items():
            states.setdefault(key, []).append(value)
    return {key: np.stack(values) for key, values in states.items()}, worst


def filtered_features(model: Any, episode: dict[str, np.ndarray], config: Config, generator: torch.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The model's filtered state per frame, (T, deter + stoch): the deterministic part and the posterior mean;
    and the encoder's embedding of each frame alone, (T, embed)."""
    from planet_colab.imagination import filter_episode

    out = filter_episode(model, episode["obs"], episode["action"], config=config, generator=generator)
    state = torch.cat([out["deter"][:, 0], out["post_mean"][:, 0]], -1)
    return state.float().double().numpy(), out["embed"][:, 0].float().double().numpy()


def _ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Weights (F + 1, n) of a ridge fit of y on [x, 1], the intercept unpenalised (x standardised, y centred)."""
    w = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ (y - y.mean(0)))
    return np.vstack([w, y.mean(0)])


def _r2(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-column R² of `pred` against `true` (nan where `true` is constant)."""
    total = ((true - true.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 1 - ((pred - true) ** 2).sum(0) / total, np.nan)


def ridge_probe(train_x: Sequence[np.ndarray], train_y: Sequence[np.ndarray], test_x: np.ndarray,
                test_y: np.ndarray) -> dict[str, np.ndarray]:
    """Fit y ≈ x·W per column on the training episodes (penalty chosen on their last fifth), score on test.

    Returns r2, abs_error (mean |pred − true|), spread (test's std) and penalty, each per column of y.
    """
    if len(train_x) < 2:
        raise ValueError("the probe needs at least 2 training episodes (one to choose its penalty on)")
    cut = len(train_x) - max(1, len(train_x) // 5)
    x_all = np.concatenate(train_x)
    mean, std = x_all.mean(0), x_all.std(0) + 1e-8

    def scale(x: np.ndarray) -> np.ndarray:  # standardised with the training frames' statistics
        return (x - mean) / std

    fit_x, fit_y = scale(np.concatenate(train_x[:cut])), np.concatenate(train_y[:cut])
    val_x, val_y = scale(np.concatenate(train_x[cut:])), np.concatenate(train_y[cut:])
    scores = []
    for penalty in PENALTIES:
        w = _ridge(fit_x, fit_y, penalty)
        scores.append(np.nan_to_num(_r2(val_x @ w[:-1] + w[-1], val_y), nan=-np.inf))
    chosen = np.asarray(PENALTIES)[np.argmax(np.stack(scores), 0)]
    all_x, all_y, test = scale(x_all), np.concatenate(train_y), scale(test_x)
    pred = np.empty_like(test_y)
    for penalty in np.unique(chosen):
        columns = chosen == penalty
        w = _ridge(all_x, all_y[:, columns], penalty)
        pred[:, columns] = test @ w[:-1] + w[-1]
    return {"r2": _r2(pred, test_y), "abs_error": np.abs(pred - test_y).mean(0), "spread": test_y.std(0),
            "penalty": chosen}


def encoder_health(embeds: np.ndarray) -> dict[str, float]:
    """losses.embedding_spread of the encoder's outputs (N, E), and the share of its dimensions never positive
    (dead units, for a ReLU encoder)."""
    from planet_colab.losses import embedding_spread

    return {"spread": embedding_spread(torch.from_numpy(embeds)), "silent": float((embeds.max(0) <= 0).mean())}


def coordinate_names(states: dict[str, np.ndarray]) -> list[str]:
    """One name per scalar of the state dict: `key[i]`, or `key` for a scalar entry."""
    return [key if value.shape[1] == 1 else f"{key}[{i}]" for key, value in states.items()
            for i in range(value.shape[1])]


def main(argv: list[str] | None = None) -> None:
    """Replay a run's newest episodes for their physical states and probe the model's state for them; print JSON."""
    p = OneLineParser(prog="python -m planet_colab.bench probe", description=__doc__)
    p.add_argument("--run-dir", type=Path, required=True, help="a trained run (read only)")
    p.add_argument("--episodes", type=_positive_int, default=24, help="newest stored episodes to replay and probe")
    p.add_argument("--held-out", type=_positive_int, default=4,
                   help="of those, the newest ones the probe is scored on")
    p.add_argument("--threads", type=_positive_int, default=1)
    args = p.parse_args(argv)
    if args.episodes < args.held_out + 2:
        p.error(f"--episodes must be at least --held-out + 2 ({args.held_out + 2}): the probe's penalty is "
                "chosen on one training episode and fit on another")

    from tqdm.auto import tqdm

    from planet_colab.agent import build_agent_parts
    from planet_colab.env import make_env_from_config
    from planet_colab.losses import SILENT_SPREAD
    from planet_colab.run import Run
    from planet_colab.seeding import torch_generator
    from planet_colab.storage import episode_number
    from planet_colab.threads import apply_threads

    apply_threads(args.threads)
    started = time.perf_counter()
    run = Run.open(args.run_dir, new_ok=False)
    config = run.config
    trained = run.restore_agent(torch.device("cpu"))
    untrained = build_agent_parts(config, torch.device("cpu"))[0]  # the run's own initial weights
    iteration = int(trained.checkpoint["iteration"]) + 1

    env = make_env_from_config(config)
    episodes, skipped, worst, names = [], [], 0.0, []
    try:
        for path, episode in tqdm(run.storage.newest_episodes(args.episodes), desc="replaying", unit="episode"):
            number = episode_number(path)
            states, diff = replay_states(env, episode_env_seed(run, number), episode)
            if diff > REPLAY_TOLERANCE:
                skipped.append(number)
                continue
            worst = max(worst, diff)
            episodes.append((number, episode, np.concatenate(list(states.values()), 1)))
            names = names or coordinate_names(states)
    finally:
        env.close()
    if skipped:
        print(f"left out {len(skipped)} episode(s) whose replay did not reproduce the stored frames "
              f"(mean |difference| above {REPLAY_TOLERANCE:g} of 255): {', '.join(map(str, skipped))}")
    if len(episodes) < args.held_out + 2:
        raise ValueError(f"only {len(episodes)} of the newest {args.episodes} episodes replayed; the probe needs "
                         f"--held-out {args.held_out} + 2")

    split = len(episodes) - args.held_out
    y = [labels for _, _, labels in episodes]

    def probe_on(x: list[np.ndarray]) -> dict[str, np.ndarray]:
        return ridge_probe(x[:split], y[:split], np.concatenate(x[split:]), np.concatenate(y[split:]))

    result: dict[str, Any] = {}
    encoder: dict[str, dict[str, float]] = {}
    for label, model in (("trained", trained.model), ("untrained", untrained)):
        generator = torch_generator(config.seed, "bench_probe")
        states, embeds = zip(*[filtered_features(model.eval(), episode, config, generator)
                               for _, episode, _ in tqdm(episodes, desc=f"filtering ({label})", unit="episode")])
        encoder[label] = encoder_health(np.concatenate(embeds))
        result[f"state_{label}"] = probe_on(list(states))
        if label == "trained":  # the embedding alone: does the encoder see it, and the posterior leave it out?
            result["embedding_trained"] = probe_on(list(embeds))

    frames = [len(labels) for _, _, labels in episodes]
    print(f"{run.run_dir} after iteration {iteration}: probe fit on {split} episodes ({sum(frames[:split])} frames, "
          f"numbers {episodes[0][0]}-{episodes[split - 1][0]}), scored on the newest {args.held_out} "
          f"({sum(frames[split:])} frames); replayed frames within {worst:.2f} of 255 of the stored ones")
    alive, fresh = encoder["trained"], encoder["untrained"]
    print(f"encoder: its embedding varies across these frames by {alive['spread']:.2g} (std per dimension, mean; the "
          f"untrained weights' {fresh['spread']:.2g}), {alive['silent'] * 100:.0f}% of its dimensions are never "
          f"positive (untrained {fresh['silent'] * 100:.0f}%)")
    if alive["spread"] < SILENT_SPREAD:
        print(f"  the embedding is the same for every frame: the encoder ({config.encoder_activation}) is silent, the "
              "model sees nothing and runs on the actions alone")
    print("R² of a linear probe on held-out frames: from the trained model's state, from its encoder's embedding of\n"
          "the frame alone, and from the untrained model's state; |error| of the first, beside the spread")
    print(f"{'coordinate':<16} {'state':>7} {'embedding':>9} {'untrained':>9} {'|error|':>9} {'spread':>9}")
    coordinates = {}
    for i, name in enumerate(names):
        state = result["state_trained"]
        row = {"r2": float(state["r2"][i]), "r2_embedding": float(result["embedding_trained"]["r2"][i]),
               "r2_untrained": float(result["state_untrained"]["r2"][i]), "abs_error": float(state["abs_error"][i]),
               "spread": float(state["spread"][i])}
        coordinates[name] = {k: None if np.isnan(v) else round(v, 4) for k, v in row.items()}  # nan: constant
        print(f"{name:<16} {row['r2']:>7.2f} {row['r2_embedding']:>9.2f} {row['r2_untrained']:>9.2f} "
              f"{row['abs_error']:>9.3f} {row['spread']:>9.3f}")
    print(json.dumps({"bench": "probe", "run_dir": str(run.run_dir), "iteration": iteration,
                      "env_name": config.env_name, "train_episodes": split, "held_out": args.held_out,
                      "left_out": skipped, "replay_max_difference": round(worst, 3),
                      "encoder": {k: {m: round(v, 6) for m, v in e.items()} for k, e in encoder.items()},
                      "coordinates": coordinates,
                      "seconds": round(time.perf_counter() - started, 1)}))
