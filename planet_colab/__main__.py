"""Command line: `python -m planet_colab {train,evaluate,info} --run-dir DIR …` (train also resumes)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")  # keep Ctrl-C / Stop as KeyboardInterrupt

from planet_colab.config import PRESETS, Config, config_for_run, parse_override  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m planet_colab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="start or resume a run (the same command resumes)")
    t.add_argument("--run-dir", type=Path, help="run directory (default: runs/<preset>, Drive in Colab)")
    t.add_argument("--preset", choices=sorted(PRESETS),
                   help="config preset for a new run (default: the run's own config, else pendulum)")
    t.add_argument("--iterations", type=int, help="total iterations (may be raised on resume)")
    t.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. --set batch_size=32 seed=1")
    t.add_argument("--no-progress", action="store_true", help="plain lines instead of progress bars")
    e = sub.add_parser("evaluate", help="noise-free evaluation of a run's newest checkpoint")
    e.add_argument("--run-dir", type=Path, required=True)
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--video", type=Path, help="write the first episode as a GIF here")
    i = sub.add_parser("info", help="what a run directory holds")
    i.add_argument("--run-dir", type=Path, required=True)
    return p


def resolve_config(run_dir: Path, preset: str | None, iterations: int | None,
                   overrides: list[str]) -> Config:
    """The run's stored config (or the preset's for a new run) with command-line changes applied."""
    changes = dict(parse_override(o) for o in overrides)
    if iterations is not None:
        changes["total_iterations"] = iterations
    return config_for_run(run_dir, preset, **changes)


def cmd_train(args: argparse.Namespace) -> int:
    """Start or resume training."""
    from planet_colab.colab import default_run_dir
    from planet_colab.train import train_planner

    run_dir = args.run_dir or default_run_dir(args.preset or "pendulum")
    config = resolve_config(run_dir, args.preset, args.iterations, args.overrides)
    train_planner(config, run_dir, progress=not args.no_progress)
    print(f"Done: {config.total_iterations} iterations in {run_dir}")
    return 0


def _require_run(run_dir: Path) -> Config:
    if not (run_dir / "config.json").exists():
        raise SystemExit(f"{run_dir} is not a run directory (no config.json); "
                         "start one with `python -m planet_colab train --run-dir DIR`")
    return Config.load(run_dir / "config.json")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate the newest checkpoint without exploration noise on distinct seeds."""
    from planet_colab.checkpoint import load_checkpoint
    from planet_colab.train import build_agent_parts, evaluate

    config = _require_run(args.run_dir)
    model, planner, device, _ = build_agent_parts(config)
    ckpt = load_checkpoint(args.run_dir, model, map_location=device)
    if ckpt is None:
        raise SystemExit(f"{args.run_dir} has no checkpoint yet; train first")
    result = evaluate(config, model, planner, config, num_episodes=args.episodes,
                      seed_key="cli", device=device, record_frames=args.video is not None)
    print(f"After iteration {ckpt['iteration'] + 1}: return {result['mean']:.1f} ± {result['std']:.1f} "
          f"over {args.episodes} episodes")
    if args.video is not None:
        from planet_colab.viz import save_gif

        save_gif(result["frames"][0], args.video)
        print(f"Wrote {args.video}")
    print(json.dumps({"mean": result["mean"], "std": result["std"],
                      "returns": [float(r) for r in result["returns"]]}))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a run directory holds: episodes, iterations done, last checkpoint, last metrics."""
    from planet_colab.checkpoint import latest_checkpoint_info
    from planet_colab.storage import EpisodeStorage
    from planet_colab.train import read_metrics

    config = _require_run(args.run_dir)
    storage = EpisodeStorage(args.run_dir / "episodes")
    ckpt = latest_checkpoint_info(args.run_dir)
    rows = read_metrics(args.run_dir)
    print(f"run:         {args.run_dir} ({config.preset} preset)")
    print(f"episodes:    {storage.num_episodes}")
    done = ckpt["iteration"] + 1 if ckpt else 0
    print(f"iterations:  {done} of {config.total_iterations} checkpointed"
          + (f", {len(rows)} logged" if rows else ""))
    print(f"checkpoint:  {ckpt['file'] if ckpt else 'none yet'}")
    if rows:
        print(f"last:        {json.dumps(rows[-1], sort_keys=True)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m planet_colab`."""
    args = _parser().parse_args(argv)
    try:
        return {"train": cmd_train, "evaluate": cmd_evaluate, "info": cmd_info}[args.command](args)
    except ValueError as e:  # config problems: say what is wrong, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
