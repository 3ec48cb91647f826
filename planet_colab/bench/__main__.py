"""Dispatch `python -m planet_colab.bench <what> [args]` to planet_colab.bench.<what>.main(args)."""

from __future__ import annotations

import importlib
import sys

BENCHES = ("data", "train", "plan", "learn", "oracle", "openloop", "env")


def main(argv: list[str] | None = None) -> None:
    """Run the named benchmark with the remaining arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BENCHES:
        sys.exit(f"usage: python -m planet_colab.bench {{{'|'.join(BENCHES)}}} [options]")
    module = importlib.import_module(f"planet_colab.bench.{argv[0]}")
    module.main(argv[1:])


if __name__ == "__main__":
    main()
