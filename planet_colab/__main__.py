"""Command line: `python -m planet_colab {train,evaluate,info} --run-dir DIR …` (train also resumes),
`sweep --root DIR …` and `sweep-report --root DIR` for many runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from planet_colab import stop_signals

if __name__ == "__main__":  # before the slow imports: a stop now waits until it can be reported
    stop_signals.hold_until_ready()

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")  # keep Ctrl-C / Stop as KeyboardInterrupt

from planet_colab.config import PLANNER_FIELDS, PRESETS, Config  # noqa: E402


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error raises (run_command prints it as one line) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise UsageError(message)."""
        raise UsageError(message)


class UsageError(ValueError):
    """A command-line argument is wrong."""


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


THREADS_HELP = ("torch threads (default: OMP_NUM_THREADS, else one per physical core this process may use; "
                "a resumed run repeats bit for bit at the same count)")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m planet_colab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,evaluate,info,sweep,sweep-report}")
    t = sub.add_parser("train", help="start or resume a run (the same command resumes)")
    t.add_argument("--run-dir", type=Path,
                   help="run directory (default: ~/planet_colab_runs/<preset>; Drive in Colab)")
    t.add_argument("--preset", choices=sorted(PRESETS),
                   help="config preset for a new run (default: the run's own config, else pendulum)")
    t.add_argument("--iterations", type=_positive_int,
                   help="total iterations (may be changed on resume; saved to the run's config.json)")
    t.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. --set batch_size=32 seed=1 (saved to config.json)")
    t.add_argument("--paper-sizes", action="store_true",
                   help="PlaNet's own training and planning sizes (batch 50 × 50, 100 steps, 3 free nats, CEM "
                        "1000 × 10) instead of the preset's CPU recipe; --set still wins")
    t.add_argument("--no-progress", action="store_true",
                   help="plain lines instead of progress bars (the default when stderr is not a terminal)")
    t.add_argument("--take-over", action="store_true",
                   help="take the run over from another trainer that still holds its owner lease")
    t.add_argument("--threads", type=_positive_int, help=THREADS_HELP)
    e = sub.add_parser("evaluate", help="noise-free evaluation of a run's newest checkpoint")
    _add_run_choice(e, "the run to evaluate (its newest checkpoint)")
    e.add_argument("--episodes", type=_positive_int, default=10, help="episodes to play (default 10)")
    e.add_argument("--video", type=Path,
                   help="write the first episode here: a .gif, or a .mp4 when imageio-ffmpeg is installed")
    e.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="plan with other planner settings for this evaluation only (not saved), e.g. --set "
                        "candidates=1000 optim_iters=10 top_k=100; keys: " + ", ".join(PLANNER_FIELDS))
    e.add_argument("--seeds-of-iteration", type=_positive_int, metavar="N",
                   help="play the environment seeds of the run's own evaluation after iteration N (as `info` "
                        "and the training lines number them), so that the returns can be set beside it")
    e.add_argument("--explore", action="store_true",
                   help="add the training's exploration noise (a diagnostic; evaluations are noise-free)")
    e.add_argument("--no-progress", action="store_true",
                   help="a plain line per episode instead of progress bars (the default when stderr is not a "
                        "terminal)")
    e.add_argument("--threads", type=_positive_int, help=THREADS_HELP)
    i = sub.add_parser("info", help="what a run directory holds")
    _add_run_choice(i, "the run directory to describe")
    _add_sweep_parsers(sub)
    return p


def _add_run_choice(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--run-dir", type=Path, help=f"{what} (default: the --preset's run directory)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="the run `train --preset NAME` trains (~/planet_colab_runs/NAME; Drive in Colab)")


def _chosen_run_dir(args: argparse.Namespace) -> Path:
    """The run an `evaluate` or `info` names: --run-dir, else the --preset's run directory."""
    from planet_colab.colab import default_run_dir

    if args.run_dir is None and args.preset is None:
        raise UsageError("name the run: --preset NAME (the run `train --preset NAME` made) or --run-dir DIR")
    return args.run_dir or default_run_dir(args.preset)


def cmd_train(args: argparse.Namespace) -> int:
    """Start or resume training."""
    from planet_colab.colab import default_run_dir
    from planet_colab.config import PAPER_SIZES
    from planet_colab.cost import describe_cost
    from planet_colab.run import Run
    from planet_colab.threads import apply_threads
    from planet_colab.train import train_planner

    apply_threads(args.threads)  # before any environment is made: the renderer reads its thread count then
    run_dir = args.run_dir or default_run_dir(args.preset or "pendulum")
    changes = _set_changes(args.overrides, args.iterations)
    if args.paper_sizes:
        changes = {**PAPER_SIZES, **changes}
    run = Run.open(run_dir, args.preset, changes=changes)
    if args.preset is None and (run.is_new or args.run_dir is None):
        print(f"No --preset given: {'a new' if run.is_new else 'resuming the'} {run.config.preset} run in "
              f"{run_dir} (--preset NAME picks another: {', '.join(sorted(PRESETS))})")
    if run.is_new:
        print(describe_cost(run.config))
    # Bars redraw a line with carriage returns: in a log file (`nohup … > log`) they pile up into one
    # endless line, so a stream that is not a terminal gets the plain line per iteration instead.
    progress = not args.no_progress and sys.stderr.isatty()
    result = train_planner(run, progress=progress, take_over=args.take_over)
    total = run.config.total_iterations
    if result["start_iteration"] >= total:
        print(f"{run_dir} had already finished its {total} iteration(s); `--iterations N` (more than {total}) "
              "trains it longer")
    else:
        print(f"Done: {total} iteration(s) in {run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate the newest checkpoint without exploration noise on distinct seeds."""
    from planet_colab.agent import evaluate
    from planet_colab.planner import CEMPlanner
    from planet_colab.run import Run
    from planet_colab.threads import apply_threads
    from planet_colab.video import FILE_SCALE, check_video_path, save_video

    apply_threads(args.threads)
    run = Run.open(_chosen_run_dir(args), args.preset, new_ok=False)
    if args.video is not None:
        check_video_path(args.video, what="--video")  # before minutes of play, not after
        # A folder that does not exist is more often a typo than a wish: refuse rather than create it.
        if not args.video.parent.is_dir():
            raise ValueError(f"--video {args.video}: the folder {args.video.parent} does not exist; create it "
                             "first, or name a file in an existing folder")
    config = _planner_config(run.config, args.overrides)
    agent = run.restore_agent()
    model, device, ckpt = agent.model, agent.device, agent.checkpoint
    planner = CEMPlanner.from_config(config, agent.planner.action_dim, precision=agent.precision)
    # The training loop keys its evaluation after iteration N (1-based) by N - 1 (train.evaluate_iteration).
    seed_key = "cli" if args.seeds_of_iteration is None else args.seeds_of_iteration - 1
    progress = not args.no_progress and sys.stderr.isatty()
    started = time.monotonic()

    def say_episode(k: int, episode_return: float, length: int) -> None:
        print(f"episode {k + 1} of {args.episodes}: return {episode_return:.1f} ({length} steps, "
              f"{time.monotonic() - started:.0f} s so far)", flush=True)

    # In a log file the bars would pile up into one line: an episode of a six-action task takes minutes.
    result = evaluate(model, planner, config, num_episodes=args.episodes, seed_key=seed_key, device=device,
                      record_frames=args.video is not None, explore=args.explore, progress=progress,
                      on_episode=None if progress else say_episode)
    warm = ", warm-started" if config.plan_warm_start else ""
    noise = f", exploration noise {config.expl_noise:g}" if args.explore else ""
    seeds = ("" if args.seeds_of_iteration is None
             else f" on the seeds of the evaluation after iteration {args.seeds_of_iteration}")
    print(f"After iteration {ckpt['iteration'] + 1}: return {result['mean']:.1f} ± {result['std']:.1f} "
          f"over {args.episodes} episode{'s' if args.episodes > 1 else ''}{seeds} (CEM {config.candidates} × "
          f"{config.optim_iters}, top {config.top_k}, horizon {config.horizon}{warm}{noise}); "
          f"mean |action| {result['mean_abs_action']:.3f}")
    if args.video is not None:
        path = save_video(result["frames"][0], args.video)
        frames = len(result["frames"][0])
        print(f"Wrote {path} ({frames} frames at {FILE_SCALE}× size, {path.suffix[1:].upper()})")
    # Last line: one JSON object, for scripts.
    print(json.dumps({"mean": result["mean"], "std": result["std"],
                      "returns": [float(r) for r in result["returns"]],
                      "mean_abs_action": result["mean_abs_action"],
                      "explore": args.explore, "seeds_of_iteration": args.seeds_of_iteration,
                      "planner": {k: getattr(config, k) for k in PLANNER_FIELDS}}))
    return 0


def _set_changes(overrides: list[str], iterations: int | None = None) -> dict[str, Any]:
    """`--set key=value …` (and `--iterations N`) as config changes; a malformed one is a usage error."""
    from planet_colab.config import changes_from_args

    try:
        return changes_from_args(overrides, iterations)
    except ValueError as e:
        raise UsageError(f"argument --set: {e}") from None


def _planner_config(config: Config, overrides: list[str]) -> Config:
    """The run's config with `evaluate --set`'s planner changes (UsageError for anything else)."""
    changes = _set_changes(overrides)
    other = sorted(set(changes) - set(PLANNER_FIELDS))
    if other:
        raise UsageError(f"argument --set: evaluate changes only how the trained model plans "
                         f"({', '.join(PLANNER_FIELDS)}); {', '.join(other)} would need training again")
    return config.replace(**changes)  # an invalid value raises ValueError: run_command prints it as one line


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a run directory holds: task, episodes, iterations done, last results, time."""
    from planet_colab.run import Run
    from planet_colab.summary import run_summary

    run_dir = _chosen_run_dir(args)
    if args.preset is not None and args.run_dir is not None:
        Run.open(run_dir, args.preset, new_ok=False)  # refuses a run of another preset, in one line
    print(run_summary(run_dir))
    return 0


def _add_sweep_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="train presets × seeds as Ray tasks, one run directory each "
                       "(the same command resumes)")
    s.add_argument("--root", type=Path, required=True, help="runs go to ROOT/<preset>/seed_<s>")
    s.add_argument("--presets", nargs="+", required=True, metavar="PRESET",
                   help=f"one or more of: {', '.join(sorted(PRESETS))}")
    s.add_argument("--seeds", nargs="+", type=int, required=True, metavar="SEED")
    s.add_argument("--iterations", type=int, help="total iterations per run (default: the preset's)")
    s.add_argument("--eval-every", type=int, metavar="N", help="evaluate every N iterations and after the "
                   "last (default: the preset's; applies to runs already started too, and changes no "
                   "training: evaluations play on seeds of their own)")
    s.add_argument("--cpus-per-run", type=int, default=1, help="Ray CPUs and torch threads per run")
    s.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray GPUs per run (may be 0.5)")
    s.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS, else start Ray "
                   "on this machine)")
    s.add_argument("--local-cpus", type=int, help="CPUs a Ray started on this machine may use "
                   "(default: all; fewer leaves cores to other work)")
    r = sub.add_parser("sweep-report", help="compare a sweep's runs: curve, table, JSON, TensorBoard")
    r.add_argument("--root", type=Path, required=True)
    r.add_argument("--tensorboard-dir", type=Path,
                   help="where TensorBoard event files go (default: ROOT/tensorboard)")
    r.add_argument("--out", type=Path, help="where sweep.{png,md,json} go (default: ROOT/report); "
                   "a hand-written notes block in an existing sweep.md is kept")
    r.add_argument("--reference", action="append", default=[], metavar="PRESET=FILE",
                   help="draw a published single run (bench learn's JSON, e.g. "
                   "pendulum=docs/results/pendulum.json) beside that preset's seeds; repeatable")
    r.add_argument("--random-baseline", action="append", default=[], metavar="PRESET",
                   help="measure PRESET's random policy (10 episodes of physics and rendering, 1–2 min for "
                   "half_cheetah) and draw it as a reference line; kept by later reports in the same --out; "
                   "repeatable")
    r.add_argument("--zero-baseline", action="append", default=[], metavar="PRESET",
                   help="play the evaluations of PRESET's table row again with zero actions, on the same "
                   "environment seeds (what the environment pays for doing nothing); later reports keep it, "
                   "and play the row's evaluations again when newer ones move it; repeatable")
    r.add_argument("--forget", action="append", default=[], metavar="PRESET/seed_S",
                   help="leave out a finished run that --out's earlier sweep.json holds and ROOT no longer does "
                   "(such runs are kept by default: a machine that went with its disk takes no result along); "
                   "repeatable")
    r.add_argument("--readme", type=Path, metavar="FILE",
                   help="also put the benchmark table between FILE's <!-- benchmark table … --> markers "
                        "(e.g. README.md), linking the page written to --out")
    r.add_argument("--cpu", metavar="TEXT", help="the machine to name for runs whose metrics rows record none "
                   "(runs started before rows recorded their CPU), e.g. \"Xeon 8480+ (AMX), 1 thread\"")


def cmd_sweep(args: argparse.Namespace) -> int:
    """Train (or resume) every run of a sweep; exit 1 when a run failed."""
    from planet_colab.sweep import run_sweep

    try:
        outcomes = run_sweep(args.root, args.presets, args.seeds, iterations=args.iterations,
                             eval_every=args.eval_every,
                             cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                             address=args.address, local_cpus=args.local_cpus)
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if any(o.startswith("failed") for o in outcomes.values()) else 0


def cmd_sweep_report(args: argparse.Namespace) -> int:
    """Write a sweep's comparison (PNG, markdown, JSON) and TensorBoard files."""
    from planet_colab.sweep_report import write_report

    references = {}
    for item in args.reference:
        preset, sep, path = item.partition("=")
        if not (sep and preset and path):
            raise ValueError(f"--reference wants PRESET=FILE (e.g. pendulum=docs/results/pendulum.json), "
                             f"got {item!r}")
        if preset in references:
            raise ValueError(f"--reference names {preset} twice ({references[preset]}, {path}); give one")
        references[preset] = path
    if args.readme is not None:
        from planet_colab.sweep_report import check_readme

        check_readme(args.readme)  # before minutes of measuring a random policy
    summary = write_report(args.root, tensorboard_dir=args.tensorboard_dir, out_dir=args.out,
                           references=references, random_baseline=args.random_baseline, cpu=args.cpu,
                           zero_baseline=args.zero_baseline, forget=args.forget)
    if args.readme is not None:
        from planet_colab.sweep_report import report_dir, update_readme

        page = report_dir(args.root, args.out) / "sweep.md"
        page = Path(os.path.relpath(page, args.readme.parent)).as_posix()  # as the README links it
        update_readme(args.readme, summary, page)
        print(f"Updated the benchmark table in {args.readme}")
    return 0


def _disk_error(error: OSError) -> str:
    """An OSError as one line without "[Errno N]" (safeio's already name the file and what to do)."""
    from planet_colab.run_config import one_line

    if not error.strerror:
        return one_line(error)
    names = [os.fsdecode(n) for n in (error.filename, error.filename2) if n is not None]
    return " ".join(": ".join([error.strerror, *names]).split())


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """A warning as the command line prints it: one line, without the source line Python adds."""
    from planet_colab.run_config import one_line

    return f"warning: {one_line(message) if isinstance(message, BaseException) else message}\n"


def run_command(action: Callable[[], int]) -> int:
    """Run one command-line action as every command here ends: 0 done, 2 a user error (one line), 3 a disk
    or Drive error (one line naming the file), 130 stopped by Ctrl-C/SIGTERM; warnings print as one line."""
    from planet_colab.lease import LeaseError
    from planet_colab.run_config import RunError, one_line  # imports torch: seconds

    formatwarning, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        with stop_signals.stops_raise():  # SIGTERM too (`kill`, a job scheduler, a preempted node)
            return action()
    except KeyboardInterrupt as stop:
        if not getattr(stop, "reported", False):  # the loop has said what it saved
            print("Stopped; nothing was lost. Run the same command to resume.", file=sys.stderr)
        return 130
    except (ValueError, RunError, LeaseError) as e:  # what the user can fix: one line, no traceback
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # Drive dropped for good, a full disk, a run directory that cannot be made
        print(f"error: {_disk_error(e)}", file=sys.stderr)
        return 3
    finally:
        warnings.formatwarning = formatwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m planet_colab` (exit codes: see run_command)."""
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "info": cmd_info, "sweep": cmd_sweep,
                "sweep-report": cmd_sweep_report}

    def action() -> int:
        args = _parser().parse_args(argv)
        return commands[args.command](args)

    return run_command(action)


if __name__ == "__main__":
    exit_code = main()
    stop_signals.forget_interrupted_exec()
    sys.exit(exit_code)
