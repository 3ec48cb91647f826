"""How many threads torch and the software renderer may use, so that they do not oversubscribe the CPU.

A 2-core machine (Colab's CPU runtime, the dev box) runs torch's OpenMP pool and mesa's llvmpipe
rasteriser threads side by side; more runnable threads than cores makes every parallel op wait for a
descheduled thread (a tiny cartpole iteration was seen to go from 4 s to 57 s under load, issue 26).
The default is one torch thread per physical core this process may run on, unless OMP_NUM_THREADS
says otherwise; the renderer gets as many rasteriser threads as torch has (llvmpipe would start one
per CPU of the machine, e.g. 16 per run for a sweep of 1-thread runs on a 16-CPU machine).
Measured on the 2-core AMX box under load ~3.9 (cartpole_swingup, 375 agent steps of
8 physics steps and one 64×64 frame): 5.6-5.9 ms CPU per agent step whatever LP_NUM_THREADS (0, 1,
unset: one per CPU); wall 5.7-6.8 ms with mesa's default against 8.2-8.8 ms on the calling thread alone,
a share of the cores taken from the other processes rather than less work.
"""

from __future__ import annotations

import os
from pathlib import Path


def available_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyperthread siblings count once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology.joinpath("physical_package_id").read_text().strip(),
                       topology.joinpath("core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))  # no topology (some containers): one core per CPU
    return max(1, len(cores))


def check_threads(threads: object) -> int:
    """`threads` as a positive int, or ValueError in one line."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return threads


def default_threads() -> int:
    """OMP_NUM_THREADS when it is a positive integer, else the physical cores available."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    return available_cores()


def apply_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to `threads` (None: `default_threads()`) and as many rasteriser threads
    for mesa's llvmpipe (read when a GL context is made: call this before making an environment); return it."""
    import torch

    count = default_threads() if threads is None else check_threads(threads)
    # 0 draws on the calling thread: one rasteriser thread would only wait for it. A value the user set stays.
    os.environ.setdefault("LP_NUM_THREADS", str(count) if count > 1 else "0")
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
