"""How many threads torch and the software renderer may use, so that they do not oversubscribe the CPU.

A 2-core machine (Colab's CPU runtime, the dev box) runs torch's OpenMP pool and mesa's llvmpipe
rasteriser threads side by side; more runnable threads than cores makes every parallel op wait for a
descheduled thread (a tiny cartpole iteration was seen to go from 4 s to 57 s under load, issue 26).
The default is one torch thread per physical core this process may run on, unless OMP_NUM_THREADS
says otherwise; the renderer draws 64×64 frames on the calling thread.
"""

from __future__ import annotations

import os
from pathlib import Path

# Rasteriser threads of mesa's llvmpipe (OSMesa, EGL without a GPU); read when the GL context is made.
# A 64×64 frame is far too small to split, and the threads would compete with torch's.
RENDER_THREADS = "0"


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
    """Set torch's intra-op threads to `threads` (None: `default_threads()`), keep the renderer on one; return it."""
    import torch

    count = default_threads() if threads is None else check_threads(threads)
    os.environ.setdefault("LP_NUM_THREADS", RENDER_THREADS)  # a value the user chose stays
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
