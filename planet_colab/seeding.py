"""Random streams derived from (seed, iteration, purpose, …), so a resumed run draws the same numbers.

A restart loses every generator's state; deriving each stream from stable keys instead means
iteration i draws exactly what it would have drawn in an uninterrupted run.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed that depends only on `keys` (stable across processes and Python versions)."""
    digest = hashlib.blake2b("/".join(map(str, keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def numpy_rng(*keys: int | str) -> np.random.Generator:
    """A numpy Generator seeded from `keys`."""
    return np.random.default_rng(derive_seed(*keys))


def torch_generator(*keys: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch Generator on `device` seeded from `keys`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(*keys))
    return gen
