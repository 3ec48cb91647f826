"""Per-op CPU time of one train step or one plan: `python -m planet_colab.bench ops --what train|plan`.

Every aten op the step (or the CEM plan) dispatches is timed by process CPU time, grouped by op and by
op + dtypes and shapes of its first tensors, so a slow kernel shows as itself (bf16's unvectorised
tanh, a page-faulting buffer) rather than as a share of a phase. torch.profiler's table measures wall
time per op: on a CPU shared with other busy processes it charged large elementwise ops 10× their CPU
time here, which this does not. Timing each op costs some CPU of its own; the untimed step's CPU time
is printed beside the ops' sum. Random weights and pixels at the preset's model sizes (the cost does
not depend on them); `--action-dim` sets the action size (cheetah_run 6, walker_walk 6, cartpole 1).
The last line is JSON: cpu_ms (untimed, per step or plan), ops_cpu_ms (their sum), and the top ops.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from planet_colab.__main__ import OneLineParser, _positive_int
from planet_colab.config import PRECISIONS, get_config


class OpTimes(TorchDispatchMode):
    """Process CPU seconds and calls per aten op, and per op + the dtypes and shapes of its first tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.by_op: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        self.by_shape: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        start = time.process_time()
        out = func(*args, **(kwargs or {}))
        spent = time.process_time() - start
        name = str(func.overloadpacket.__name__)
        tensors = [a for a in args if isinstance(a, torch.Tensor)][:3]
        detail = " ".join(f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}{'' if t.is_contiguous() else '(strided)'}"
                          for t in tensors)
        for table, key in ((self.by_op, name), (self.by_shape, f"{name} {detail}")):
            table[key][0] += spent
            table[key][1] += 1
        return out


def _train_work(config: Any, batch: int, seq: int, action_dim: int) -> Callable[[], None]:
    """One train step of the preset's world model on random pixels (as `bench train`)."""
    from planet_colab.bench.train import random_batch
    from planet_colab.losses import make_optimizer, train_step
    from planet_colab.models import WorldModel

    torch.manual_seed(0)
    model = WorldModel(action_dim, config)
    optimizer = make_optimizer(model, config)
    g = torch.Generator().manual_seed(0)
    obs, act, rew = random_batch(seq, batch, action_dim, g)
    device = torch.device("cpu")

    def step() -> None:
        train_step(model, optimizer, obs, act, rew, device, config=config, generator=g)
    return step


def _plan_work(config: Any, action_dim: int, precision: str) -> Callable[[], None]:
    """One CEM plan of the preset's planner from a random belief."""
    from planet_colab.models import WorldModel
    from planet_colab.planner import CEMPlanner

    torch.manual_seed(0)
    model = WorldModel(action_dim, config).eval()
    planner = CEMPlanner.from_config(config, action_dim, precision)
    g = torch.Generator().manual_seed(0)
    state = model.initial_state(1)
    state = state._replace(deter=torch.randn(state.deter.shape, generator=g),
                           stoch=torch.randn(state.stoch.shape, generator=g))

    def plan() -> None:
        planner(model, state, g)
    return plan


def main(argv: list[str] | None = None) -> None:
    """Parse options, time the work untimed and op by op, print the tables and a final JSON line."""
    from planet_colab.__main__ import _set_changes
    from planet_colab.env import action_size
    from planet_colab.precision import resolve_precision

    p = OneLineParser(prog="python -m planet_colab.bench ops", description=__doc__)
    p.add_argument("--what", choices=("train", "plan"), default="train")
    p.add_argument("--preset", default="cartpole_swingup", help="config preset for the model and planner sizes")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config changes, as train's --set (batch_size, candidates, …)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--action-dim", type=_positive_int, default=None,
                   help="the model's action size (default: the preset's environment's, e.g. 6 for walker_walk)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps or plans (after one warm-up)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=15, help="rows per table")
    args = p.parse_args(argv)
    for name in ("repeats", "threads", "top"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    torch.set_num_threads(args.threads)
    config = get_config(args.preset, precision=args.precision).replace(**_set_changes(args.overrides))
    precision = resolve_precision(config.precision, torch.device("cpu"))
    if args.action_dim is None:  # the planner's cost grows with it: measure the preset's own
        args.action_dim = action_size(config)
    if args.what == "train":  # train_step runs its config's precision itself
        work = _train_work(config, config.batch_size, config.seq_len, args.action_dim)
        what = f"train step (batch {config.batch_size} × {config.seq_len})"
    else:
        work = _plan_work(config, args.action_dim, precision)
        what = f"plan (CEM {config.candidates} × {config.optim_iters}, top {config.top_k}, horizon {config.horizon})"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.preset}: one {what}, {precision}, {args.threads} thread(s), action dim {args.action_dim}, "
          f"load1 {load:.2f}")

    work()  # warm-up: oneDNN primitives, caches, buffers
    start = time.process_time()
    for _ in range(args.repeats):
        work()
    cpu_ms = 1e3 * (time.process_time() - start) / args.repeats
    times = OpTimes()
    with times:
        for _ in range(args.repeats):
            work()
    ops_ms = 1e3 * sum(v[0] for v in times.by_op.values()) / args.repeats
    print(f"untimed: {cpu_ms:.1f} CPU ms per {args.what}; the ops' own CPU time while timed: {ops_ms:.1f} ms")

    def table(rows: dict[str, list[float]], title: str) -> list[dict[str, Any]]:
        print(f"\n{title}: CPU ms per {args.what}, calls per {args.what}, share of the ops' sum")
        top = sorted(rows.items(), key=lambda kv: -kv[1][0])[:args.top]
        out = []
        for key, (seconds, calls) in top:
            ms = 1e3 * seconds / args.repeats
            print(f"  {ms:8.2f} ms  {calls // args.repeats:5d}×  {100 * ms / max(ops_ms, 1e-9):5.1f}%  {key}")
            out.append({"op": key, "cpu_ms": round(ms, 3), "calls": calls // args.repeats})
        return out

    by_op = table(times.by_op, "by op")
    by_shape = table(times.by_shape, "by op, dtype and shape")
    print(json.dumps({"bench": "ops", "what": args.what, "preset": args.preset, "precision": precision,
                      "threads": args.threads, "action_dim": args.action_dim, "cpu_ms": round(cpu_ms, 2),
                      "ops_cpu_ms": round(ops_ms, 2), "load1": round(load, 2), "by_op": by_op, "by_shape": by_shape}))
