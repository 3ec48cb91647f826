"""Dispatch `python -m planet_colab.bench <what> [args]` to planet_colab.bench.<what>.main(args)."""

from __future__ import annotations

import importlib
import sys

BENCHES = ("data", "train", "plan", "learn", "oracle", "openloop", "env", "precision", "iteration", "warm", "versus",
           "ops", "reward", "probe")


def _usage() -> str:
    """The usage line and each benchmark's first docstring line."""
    lines = [f"usage: python -m planet_colab.bench {{{'|'.join(BENCHES)}}} [options]  (--help after one for its options)"]
    for name in BENCHES:
        doc = (importlib.import_module(f"planet_colab.bench.{name}").__doc__ or "").strip().splitlines()
        lines.append(f"  {name:9s} {doc[0] if doc else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the named benchmark with the remaining arguments; errors end as the command line's do (one line)."""
    from planet_colab.__main__ import run_command

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(_usage())
        return
    if not argv or argv[0] not in BENCHES:
        print(_usage(), file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"planet_colab.bench.{argv[0]}")
    code = run_command(lambda: module.main(argv[1:]) or 0)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
