"""How counts, sizes and paths read in messages and published pages: "1 episode", "36 MB", "pendulum/seed_0"."""

from __future__ import annotations

import os
from pathlib import Path


def plural(count: int, noun: str) -> str:
    """`count` and `noun`, with an s unless it is one: plural(1, "episode") == "1 episode"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_bytes(size: float) -> str:
    """A size in the unit that keeps its digits readable: '850 kB', '36.0 MB', '2.50 GB'."""
    if size < 1e6:
        return f"{size / 1e3:.0f} kB"
    if size < 1e9:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e9:.2f} GB"


def published_path(path: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """`path` as a published page names it: relative to `base` (default: the working directory, where the
    repository's docs/ are written from) when inside it, else just its name; never this machine's absolute path."""
    path = Path(os.path.abspath(path))
    base = Path(os.path.abspath(base if base is not None else os.getcwd()))
    try:
        return path.relative_to(base).as_posix() or path.name
    except ValueError:
        return path.name
