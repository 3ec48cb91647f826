"""Data-pipeline benchmark: `python -m planet_colab.bench data [--case pendulum|half_cheetah] [--episodes N]`.

Stores N episodes made of real rendered frames from a few random-policy episodes (so compression
is realistic): `pendulum`, 100 agent steps (200 env steps, action repeat 2), batches of 16×25; or
`half_cheetah`, HalfCheetah-v5's 1000 steps (12.3 MB of frames per episode, needs the dmc extra),
batches of the paper's 50×50. Then, in a fresh process (so RSS measures only the cache), it times a
cold load, the refresh after one new episode, and batches through DataLoader + collate.
The last line is JSON. Targets: refresh <= 2× one episode's load; RAM <= 1.1× the episodes' uint8 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from planet_colab.__main__ import OneLineParser

TRAIN_STEPS = 50
# name: (env, action repeat, env steps per episode, batch, seq_len)
CASES = {"pendulum": ("Pendulum-v1", 2, 200, 16, 25), "half_cheetah": ("HalfCheetah-v5", 1, 1000, 50, 50)}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure(episode_dir: Path, batch: int, seq_len: int) -> dict[str, float]:
    """Run in a fresh process: cold load, refresh, sampling, RAM."""
    import torch
    from torch.utils.data import DataLoader

    from planet_colab.dataset import EpisodeDataset, collate_episode_batch
    from planet_colab.storage import EpisodeStorage

    torch.set_num_threads(2)
    storage = EpisodeStorage(episode_dir)
    n = storage.num_episodes
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    dataset = EpisodeDataset(storage, seq_len, batch * TRAIN_STEPS, seed=0)
    load_s = time.perf_counter() - t0
    rss1 = _rss_bytes()
    nbytes = sum(a.nbytes for ep in dataset.episodes for a in ep.values())
    uint8_bytes = sum(ep["obs"].nbytes for ep in dataset.episodes)

    template = dataset.episodes[0]
    refresh = []
    for _ in range(5):
        storage.add_episode(template["obs"], template["action"], template["reward"], template["terminal"])
        t0 = time.perf_counter()
        dataset = EpisodeDataset(storage, seq_len, batch * TRAIN_STEPS, seed=0)
        refresh.append(time.perf_counter() - t0)
    rss2 = _rss_bytes()

    loader = DataLoader(dataset, batch_size=batch, shuffle=False, drop_last=True, collate_fn=collate_episode_batch)
    t0 = time.perf_counter()
    batches = sum(1 for _ in loader)
    sample_s = time.perf_counter() - t0
    return {
        "episodes": n,
        "load_ms_per_episode": 1000 * load_s / n,
        "refresh_ms_1_new_of_200": 1000 * statistics.median(refresh),
        "refresh_ms_all": [round(1000 * r, 2) for r in refresh],
        "sample_ms_per_batch": 1000 * sample_s / batches,
        "batches": batches,
        "ram_bytes_per_episode": (rss1 - rss0) / n,
        "ram_nbytes_per_episode": nbytes / n,
        "uint8_bytes_per_episode": uint8_bytes / n,
        "ram_growth_per_refresh_bytes": (rss2 - rss1) / len(refresh),
    }


def _render_episodes(case: str, count: int) -> tuple[list[dict[str, list]], float]:
    from planet_colab.env import make_env, run_random_episode
    from planet_colab.seeding import derive_seed, numpy_rng

    name, repeat, env_steps, _, _ = CASES[case]
    env = make_env(name, action_repeat=repeat, max_episode_steps=env_steps)
    episodes, steps = [], 0
    t0 = time.perf_counter()
    for k in range(count):
        ep = run_random_episode(env, numpy_rng(0, "bench", k), env_seed=derive_seed(0, "bench", k))
        episodes.append(ep)
        steps += len(ep["reward"])
    env.close()
    return episodes, 1000 * (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print human lines, then one JSON line."""
    parser = OneLineParser(prog="python -m planet_colab.bench data", description=__doc__)
    parser.add_argument("--case", choices=sorted(CASES), default="pendulum", help="episode shape and frames")
    parser.add_argument("--episodes", type=int, default=200, help="episodes stored before the refresh")
    parser.add_argument("--distinct", type=int, default=None,
                        help="rendered episodes the stored ones cycle through (default 4, half_cheetah 2)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the fresh process
    args = parser.parse_args(argv)
    name, repeat, env_steps, batch, seq_len = CASES[args.case]
    if args.measure is not None:
        print(json.dumps(_measure(args.measure, batch, seq_len)))
        return
    if args.distinct is None:
        args.distinct = 2 if args.case == "half_cheetah" else 4
    if args.episodes < 1 or args.distinct < 1:
        parser.error("--episodes and --distinct must be positive")

    from planet_colab.storage import EpisodeStorage

    print(f"data bench: {args.episodes} stored {name} episodes ({env_steps // repeat} steps, action repeat "
          f"{repeat}), rendered frames from {args.distinct} random-policy episodes; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rendered, env_ms = _render_episodes(args.case, args.distinct)
    print(f"  env ({repeat} physics step(s) + render): {env_ms:.2f} ms per agent step")
    with tempfile.TemporaryDirectory(prefix="planet_bench_data_") as tmp:
        storage = EpisodeStorage(Path(tmp) / "episodes")
        t0 = time.perf_counter()
        for i in range(args.episodes):
            ep = rendered[i % len(rendered)]
            storage.add_episode(ep["obs"], ep["action"], ep["reward"], ep["terminal"])
        write_ms = 1000 * (time.perf_counter() - t0) / args.episodes
        file_bytes = sum(p.stat().st_size for p in storage.episode_paths) / args.episodes
        command = [sys.executable, "-m", "planet_colab.bench.data", "--case", args.case,
                   "--measure", str(storage.episode_dir)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(case=args.case, steps_per_episode=env_steps // repeat, batch=batch, seq_len=seq_len,
                  write_ms_per_episode=write_ms, file_bytes_per_episode=file_bytes, env_ms_per_step=env_ms,
                  load_average=os.getloadavg()[0])
    result["refresh_over_load"] = result["refresh_ms_1_new_of_200"] / result["load_ms_per_episode"]
    result["ram_over_uint8"] = result["ram_bytes_per_episode"] / result["uint8_bytes_per_episode"]
    result["refresh_ok"] = result["refresh_over_load"] <= 2.0
    result["ram_ok"] = result["ram_over_uint8"] <= 1.1

    print(f"  write: {write_ms:.1f} ms per episode, {file_bytes / 1e3:.1f} kB per file "
          f"({result['uint8_bytes_per_episode'] / file_bytes:.0f}x smaller than the uint8 frames)")
    print(f"  cold load: {result['load_ms_per_episode']:.2f} ms per episode")
    print(f"  refresh after 1 new of {result['episodes']}: {result['refresh_ms_1_new_of_200']:.2f} ms "
          f"= {result['refresh_over_load']:.2f}x one episode's load (target <= 2x) "
          f"{'OK' if result['refresh_ok'] else 'MISSED'}")
    print(f"  RAM: {result['ram_bytes_per_episode'] / 1e6:.3f} MB per episode (RSS) for "
          f"{result['uint8_bytes_per_episode'] / 1e6:.3f} MB of uint8 frames = {result['ram_over_uint8']:.3f}x "
          f"(target <= 1.1x) {'OK' if result['ram_ok'] else 'MISSED'}; "
          f"{result['ram_growth_per_refresh_bytes'] / 1e6:.2f} MB RSS growth per refresh (one new episode)")
    print(f"  sampling: {result['sample_ms_per_batch']:.2f} ms per batch of {batch}x{seq_len} "
          f"through DataLoader + collate ({result['batches']} batches)")
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}))


if __name__ == "__main__":
    main()
