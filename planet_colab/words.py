"""How counts and sizes read in the messages a person sees: "1 episode", "2 episodes", "36 MB"."""

from __future__ import annotations


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
