"""Device and numeric precision: which device to train on and which autocast dtype to use there.

Master weights always stay fp32; only the conv stacks' forward and backward run in reduced precision
under autocast (FP32_PARTS keeps the RSSM and the reward head in fp32), and losses/KL are computed
in fp32 (losses.py).

`auto` picks: CUDA when present — bf16 on compute capability ≥ 8 (Ampere+), fp32 below (T4-class);
on a CPU, bf16 when it has native bf16 dot products (AMX, or AVX512-BF16), fp32 otherwise.
fp16 (with a grad scaler) is never picked by `auto`: on a fixed batch it fell behind fp32 (its
scaler skips the first steps, and on a CPU it is emulated, ~50× slower), and no learning run has
shown it learns as fp32 does (docs/results/precision.md). It stays available by name.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Iterator

import torch

from planet_colab.config import PRECISIONS

# The world model's parts that autocast may run in reduced precision (WorldModel._part names them).
MODEL_PARTS = ("encoder", "decoder", "reward", "prior", "posterior", "transition")
# The parts kept in fp32 under bf16/fp16 autocast: the RSSM (transition, posterior and prior heads) and
# the reward head. Their matmuls are (B·T, 200)-sized and gain little from bf16; the recurrence
# integrates small updates into its state over hundreds of steps, and the KL and the reward, which
# the planner ranks plans by, are read off them. Only the conv stacks run in reduced precision.
FP32_PARTS: frozenset[str] = frozenset({"transition", "posterior", "prior", "reward"})


def select_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags from /proc/cpuinfo (avx2, avx512_bf16, …); empty where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


# The flags that set a CPU's training speed here: AVX2 (the fp32 kernels), AVX512-BF16 and AMX-BF16
# (native bf16, which precision=auto picks). Recorded with every metrics row (machine_record).
SPEED_FLAGS = ("avx2", "avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """This CPU's model name (/proc/cpuinfo's "model name", else what platform knows, e.g. "arm")."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_record(device: torch.device | str) -> dict[str, object]:
    """What a metrics row says about the machine its seconds were measured on: CPU model and speed flags, GPU."""
    # Per row, not per run: a run resumed on another runtime (a new Colab session) times its later
    # iterations on another CPU, and each row's seconds belong to the CPU beside them.
    record: dict[str, object] = {"cpu": cpu_model(), "cpu_flags": [f for f in SPEED_FLAGS if f in cpu_flags()]}
    device = torch.device(device)
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU computes bf16 dot products natively (AMX or AVX512-BF16)."""
    try:
        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:  # older torch: no capability query
        capability = ""
    return "AMX" in capability or bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """Turn "auto"|"fp32"|"bf16"|"fp16" into the concrete precision ("fp32"|"bf16"|"fp16") for `device`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision != "auto":
        return precision  # explicit choice is honoured (fp16 on CPU works, but slowly)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bf16" if major >= 8 else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype for a resolved precision (None for fp32)."""
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextlib.contextmanager
def autocast_context(precision: str, device: torch.device | str) -> Iterator[None]:
    """Autocast for `precision` ("auto" is resolved for `device`); a no-op for fp32."""
    device = torch.device(device)
    dtype = autocast_dtype(resolve_precision(precision, device))
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def make_grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A GradScaler when the resolved precision is fp16 (needed against underflow), else None."""
    device = torch.device(device)
    if resolve_precision(precision, device) != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


_ALLOCATOR_CONFIGURED: bool | None = None


def configure_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of returning big blocks to the OS; True if applied.

    By default glibc serves every allocation above 128 KiB–32 MiB with a fresh mmap and unmaps it
    on free, so each train step page-faults its ~1 GB of activations in again (≈15% of a CPU step
    here). Turning mmap off for malloc and raising the trim threshold lets PyTorch's CPU tensors
    reuse warm pages. Process-wide and idempotent; a no-op (False) where glibc is not available.
    """
    global _ALLOCATOR_CONFIGURED
    if _ALLOCATOR_CONFIGURED is not None:
        return _ALLOCATOR_CONFIGURED
    _ALLOCATOR_CONFIGURED = False
    try:
        import ctypes
        import platform

        if platform.system() != "Linux":
            return False
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
        ok = (libc.mallopt(m_mmap_max, 0) == 1
              and libc.mallopt(m_trim_threshold, 1 << 30) == 1
              and libc.mallopt(m_top_pad, 64 << 20) == 1)
        _ALLOCATOR_CONFIGURED = bool(ok)
    except (OSError, AttributeError):
        pass
    return _ALLOCATOR_CONFIGURED
