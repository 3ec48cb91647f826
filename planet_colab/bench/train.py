"""Benchmark full world-model train steps: `python -m planet_colab.bench train --batch 16 --seq 25`.

Synthetic data (random pixels, actions, rewards) with the chosen preset's model sizes; prints human
lines, then one JSON object: frames_per_s (B·L per second of full train steps after warm-up, from
the best round's median step), ms_per_step, typical_ms_per_step (median over rounds), cpu_ms_per_step
(process CPU time per step: on a shared machine, wall time ≈ this / usable cores), precision, load1.
On a CPU shared with other busy processes, use --threads 1: a 2-thread OpenMP pool whose second
thread keeps being descheduled waits a time slice at every parallel op (10-50× slower steps).
`--plain-layers` runs the plain nn conv layers instead of planet_colab.cpu_kernels (what a GPU runs),
to re-measure the kernels on a new CPU; the JSON's conv_path says which ran.

Matmul share: the step's matmul and convolution FLOPs (counted once by torch's FlopCounterMode,
forward and backward) per second of the best round, against a 1024² matmul in the step's precision
timed in the same run (the machine's attainable dense throughput): matmul_tflops, step_tflops and
step_share_of_matmul in the JSON.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time

import torch

from planet_colab.__main__ import OneLineParser, _positive_int
from planet_colab.config import PRECISIONS, Config, get_config
from planet_colab.losses import make_optimizer, train_step
from planet_colab.models import WorldModel
from planet_colab.precision import autocast_dtype, resolve_precision, select_device


def step_flops(model: WorldModel, optimizer: torch.optim.Optimizer, batch: tuple, device: torch.device,
               config: Config) -> int:
    """Matmul and convolution FLOPs of one train step, forward and backward (weights are updated once)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, optimizer, *batch, device, config=config, generator=torch.Generator().manual_seed(1))
    return int(counter.get_total_flops())


def random_batch(seq: int, batch: int, action_dim: int, generator: torch.Generator) -> tuple:
    """Random pixels in [0, 1], actions in [-1, 1] and rewards, (T, B, …): a train step's cost does not depend on them."""
    obs = torch.randint(0, 256, (seq, batch, 64, 64, 3), generator=generator).float().div_(255)
    act = torch.rand(seq, batch, action_dim, generator=generator) * 2 - 1
    return obs, act, torch.randn(seq, batch, generator=generator)


def matmul_tflops(precision: str, device: torch.device, size: int = 1024, repeats: int = 20) -> float:
    """Dense throughput of a size² matmul in `precision` on `device` (best of `repeats`), in TFLOP/s."""
    dtype = autocast_dtype(precision) or torch.float32
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = math.inf
    for _ in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best / 1e12


def main(argv: list[str] | None = None) -> None:
    """Parse options, time `train_step`, print lines and a final JSON line."""
    p = OneLineParser(prog="python -m planet_colab.bench train", description=__doc__)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=25)
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--preset", default="pendulum", help="config preset for the model sizes")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (the best is reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--action-dim", type=_positive_int, default=None,
                   help="the model's action size (default: the preset's environment's)")
    p.add_argument("--plain-layers", action="store_true", help="plain nn conv layers, not the CPU kernels")
    args = p.parse_args(argv)
    for name in ("batch", "seq", "steps", "rounds", "threads"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.seq < 2:
        p.error("--seq must be at least 2")

    torch.set_num_threads(args.threads)
    device = select_device()
    config = get_config(args.preset, precision=args.precision)
    if args.action_dim is None:
        from planet_colab.env import action_size

        args.action_dim = action_size(config)
    precision = resolve_precision(config.precision, device)
    torch.manual_seed(0)
    model = WorldModel(args.action_dim, config).to(device)
    model.use_cpu_kernels = not args.plain_layers
    conv_path = "cpu_kernels" if device.type == "cpu" and model.use_cpu_kernels else "plain"
    optimizer = make_optimizer(model, config)
    gen = torch.Generator().manual_seed(0)
    T, B = args.seq, args.batch
    obs, act, rew = random_batch(T, B, args.action_dim, gen)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device={device} precision={precision} threads={args.threads} preset={args.preset} "
          f"B={B} L={T} params={sum(q.numel() for q in model.parameters()):,} conv_path={conv_path} "
          f"load1={load:.2f}")

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        train_step(model, optimizer, obs, act, rew, device, config=config, generator=gen)
    print(f"warm-up: {args.warmup} steps in {time.perf_counter() - t0:.2f} s")

    flops = step_flops(model, optimizer, (obs, act, rew), device, config)
    peak = matmul_tflops(precision, device)
    round_ms, cpu_ms = [], []
    for r in range(args.rounds):
        times = []
        cpu0 = time.process_time()
        for _ in range(args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = train_step(model, optimizer, obs, act, rew, device, config=config, generator=gen)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        cpu_ms.append(1e3 * (time.process_time() - cpu0) / args.steps)
        ms = 1e3 * statistics.median(times)
        round_ms.append(ms)
        print(f"round {r + 1}: median {ms:.1f} ms/step, min {1e3 * min(times):.1f} ms, cpu {cpu_ms[-1]:.0f} ms/step "
              f"→ {B * T / ms * 1e3:.0f} frames/s (loss {out['loss']:.1f})")
    best = min(round_ms)
    achieved = flops / (best / 1e3) / 1e12
    # On a shared CPU wall time includes waiting for a core; per CPU second is the work's own rate
    # (meaningful for one thread, where CPU seconds are the single thread's running time).
    achieved_cpu = flops / (min(cpu_ms) / 1e3) / 1e12
    print(f"matmul share: the step does {flops / 1e9:.1f} GFLOP of matmuls and convolutions, {achieved:.3f} TFLOP/s "
          f"at its best round ({achieved_cpu:.3f} per CPU second); a 1024² {precision} matmul here runs at "
          f"{peak:.3f} TFLOP/s: {100 * achieved / peak:.0f}% of it ({100 * achieved_cpu / peak:.0f}% per CPU second)")
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(json.dumps({
        "bench": "train", "frames_per_s": round(B * T / best * 1e3, 1), "ms_per_step": round(best, 2),
        "typical_ms_per_step": round(statistics.median(round_ms), 2),
        "cpu_ms_per_step": round(min(cpu_ms), 1), "precision": precision, "conv_path": conv_path,
        "device": str(device), "batch": B, "seq": T, "threads": args.threads, "load1": round(load_end, 2),
        "step_gflop": round(flops / 1e9, 2), "step_tflops": round(achieved, 4),
        "matmul_tflops": round(peak, 4), "step_share_of_matmul": round(achieved / peak, 3),
        "step_tflops_per_cpu_s": round(achieved_cpu, 4), "step_share_of_matmul_per_cpu_s": round(achieved_cpu / peak, 3),
    }))
