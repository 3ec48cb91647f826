"""Argument checks shared by the package's public functions, so that each says the same one line."""

from __future__ import annotations

import numbers


def positive_int(name: str, value: object) -> int:
    """`value` as an int when it is an integer ≥ 1 (numpy integers too, never a bool); else ValueError naming `name`."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
