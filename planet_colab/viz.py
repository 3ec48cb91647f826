"""What the notebooks show: learning curves, a live training dashboard, frames, reconstructions and
open-loop predictions.

Figures are `matplotlib.figure.Figure` objects built without pyplot, so nothing is shown twice by the
inline backend, nothing leaks between tests, and the Agg backend in CI needs no display; `show(fig)`
puts one in a notebook as a PNG, which looks the same under Colab's ipywidgets 7.7 and Jupyter's 8.
The plot functions only draw arrays: the model's reconstructions and imagination come from
`planet_colab.imagination`, videos from `planet_colab.video`, the storage-size table from
`planet_colab.storage_sizes`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from planet_colab.checks import positive_int
from planet_colab.frames import as_frames, figure_png, save_figure

__all__ = [
    "show", "figure_png", "save_figure", "format_config",
    "plot_learning_curves", "LiveDashboard",
    "plot_frames", "plot_reconstructions", "plot_open_loop",
]

# Phases of one iteration as timed by train_planner (seconds), drawn as stacked bars.
TIME_KEYS = ("train_s", "collect_s", "eval_s", "io_s", "checkpoint_s")
# metrics key -> legend label; "kl_loss" is the loss term, max(KL, free nats) per step, "kl" the KL itself
# (recorded since 2026-12-06): where it runs under the free nats the KL gets no gradient at all.
LOSS_CURVES = {"obs_loss": "obs", "reward_loss": "reward", "kl_loss": "kl", "kl": "KL itself"}
# Before about this many iterations a world model predicts blur: the open-loop figure says so, lest it look broken.
EARLY_ITERATIONS = 10


# ---- figures in notebooks (figure_png and save_figure live in frames, shared with sweep_report) ---
def show(fig: Figure, dpi: int = 100) -> None:
    """Display the figure in a notebook as a PNG (prints a one-line summary outside IPython)."""
    from IPython.display import Image, display

    display(Image(data=figure_png(fig, dpi)))


def format_config(config: Any, columns: int = 3) -> str:
    """A Config's fields as aligned `name = value` text in columns, for print()."""
    if not hasattr(config, "to_dict"):
        raise ValueError(f"config: expected a planet_colab Config, got {type(config).__name__}")
    items = [f"{k} = {v!r}" for k, v in config.to_dict().items()]
    rows = -(-len(items) // columns)
    width = max(len(i) for i in items) + 2
    cols = [items[c * rows:(c + 1) * rows] for c in range(columns)]
    return "\n".join("".join(col[r].ljust(width) for col in cols if r < len(col)).rstrip()
                     for r in range(rows))


# ---- input checks --------------------------------------------------------------------------------
def _check_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "iteration" not in row:
            raise ValueError(f"rows[{i}]: expected a metrics dict with an 'iteration' key "
                             f"(a line of metrics.jsonl), got {type(row).__name__}")
    return sorted(rows, key=lambda r: r["iteration"])


# ---- learning curves -----------------------------------------------------------------------------
def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(iterations counted from 1, values) of the rows that have `key`."""
    have = [r for r in rows if r.get(key) is not None]
    return (np.array([r["iteration"] + 1 for r in have], dtype=float),
            np.array([float(r[key]) for r in have], dtype=float))


def _draw_curves(fig: Figure, rows: Sequence[Mapping[str, Any]], title: str | None = None) -> None:
    """Draw the four learning-curve panels of `rows` onto an empty figure."""
    ax_loss, ax_ret, ax_time, ax_grad = fig.subplots(2, 2).ravel()
    if title:
        fig.suptitle(title)
    if not rows:
        for ax in (ax_loss, ax_ret, ax_time, ax_grad):
            ax.text(0.5, 0.5, "no iterations yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        return

    for key, label in LOSS_CURVES.items():
        x, y = _series(rows, key)
        if len(x):
            ax_loss.plot(x, y, marker=".", label=label, **({"linestyle": "--"} if key == "kl" else {}))
    ax_loss.set_title("world-model losses (per iteration mean)")
    if ax_loss.lines:
        _legend_beside(ax_loss)
        # The observation loss is hundreds of times the KL (held at the free nats): a log axis shows both.
        if all((line.get_ydata() > 0).all() for line in ax_loss.lines):
            ax_loss.set_yscale("log")

    x, y = _series(rows, "collect_return")
    if len(x):
        ax_ret.plot(x, y, marker=".", color="tab:gray", label="collect (with exploration noise)")
    x, mean = _series(rows, "eval_mean")
    if len(x):
        _, std = _series(rows, "eval_std")
        std = std if len(std) == len(mean) else np.zeros_like(mean)
        ax_ret.errorbar(x, mean, yerr=std, marker="o", capsize=3, color="tab:red",
                        label="evaluation mean ± std (no noise)")
    ax_ret.set_title("episode return")
    if ax_ret.lines:
        _legend_beside(ax_ret)

    iters = np.array([r["iteration"] + 1 for r in rows], dtype=float)
    bottom = np.zeros(len(rows))
    for key in TIME_KEYS:
        vals = np.array([float(r.get(key) or 0.0) for r in rows])
        if vals.any():
            ax_time.bar(iters, vals, bottom=bottom, width=0.8, label=key.removesuffix("_s"))
            bottom += vals
    ax_time.set_title("seconds per iteration")
    if bottom.any():
        ax_time.set_ylim(0, 1.3 * bottom.max())  # headroom for the legend above the bars
        ax_time.legend(fontsize="small", ncol=5, loc="upper center", columnspacing=0.8, handlelength=1.2)

    x, y = _series(rows, "grad_norm")
    if len(x):
        ax_grad.plot(x, y, marker=".", color="tab:purple")
        if (y > 0).all() and y.max() > 10 * y.min():
            ax_grad.set_yscale("log")
    ax_grad.set_title("gradient norm (before clipping)")
    for ax in (ax_loss, ax_ret, ax_time, ax_grad):
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend_beside(ax: Any) -> None:
    """A legend to the right of its axes, where no data can be under it (constrained layout makes room)."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_learning_curves(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Figure:
    """Losses, collect/eval returns, seconds per iteration (train/collect/eval/io) and grad norm from metrics rows."""
    rows = _check_rows(rows)
    fig = Figure(figsize=(11, 7), layout="constrained")
    _draw_curves(fig, rows, title)
    return fig


class LiveDashboard:
    """Progress bar plus learning curves redrawn in place; pass `dashboard.update` as train_planner's callback."""

    def __init__(self, total_iterations: int, rows: Sequence[Mapping[str, Any]] = (), *,
                 show: bool = True, dpi: int = 80) -> None:
        """Start from the run's existing rows (a resumed run shows its history at once)."""
        positive_int("total_iterations", total_iterations)
        self.total = total_iterations
        self.rows = _check_rows(rows)
        self.dpi = dpi
        self.fig = Figure(figsize=(11, 7), layout="constrained")
        self._bar = None
        self._handle = None
        if show:
            from IPython.display import Image, display
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_iterations, initial=len(self.rows), desc="iterations",
                             unit="it", dynamic_ncols=True)
            self._redraw()
            # display_id lets update() replace the image in place (ipywidgets 7 and 8 alike).
            self._handle = display(Image(data=figure_png(self.fig, dpi)), display_id=True)
        else:
            self._redraw()

    def _title(self) -> str:
        done = self.rows[-1]["iteration"] + 1 if self.rows else 0
        text = f"iteration {done} of {self.total}"
        if self.rows:
            last = self.rows[-1]
            text += f" — {last.get('episodes', '?')} episodes, {float(last.get('seconds', 0.0)):.1f} s/iteration"
        return text

    def _redraw(self) -> None:
        self.fig.clear()
        _draw_curves(self.fig, self.rows, self._title())

    def update(self, row: Mapping[str, Any]) -> None:
        """Add one iteration's metrics row, advance the bar and redraw the figure."""
        (row,) = _check_rows([row])
        # A resumed run repeats iterations after its last checkpoint: the new row replaces the old.
        self.rows = [r for r in self.rows if r["iteration"] < row["iteration"]] + [dict(row)]
        self._redraw()
        if self._bar is not None:
            self._bar.n = row["iteration"] + 1
            self._bar.set_postfix(loss=f"{float(row.get('loss', float('nan'))):.2f}",
                                  ret=f"{float(row.get('collect_return', float('nan'))):.1f}", refresh=False)
            self._bar.refresh()
        if self._handle is not None:
            from IPython.display import Image

            self._handle.update(Image(data=figure_png(self.fig, self.dpi)))

    def phase(self, name: str, done: int, total: int) -> None:
        """Show the running iteration's phase on the bar (train_planner's `phase`): "train 37/100" and so on."""
        if self._bar is not None:
            self._bar.set_description(f"iterations ({name} {done}/{total})" if name == "train"
                                      else f"iterations ({name})", refresh=True)

    def close(self) -> None:
        """Close the progress bar (the figure stays displayed)."""
        if self._bar is not None:
            self._bar.close()


# ---- frames --------------------------------------------------------------------------------------
def plot_frames(frames: Any, ncols: int = 8, labels: Sequence[str] | None = None,
                title: str | None = None, num: int | None = None) -> Figure:
    """A grid of images (N, H, W, 3), uint8 or floats in [0, 1]; `num` picks that many evenly spaced, labelled t=…."""
    imgs = as_frames(frames)
    if num is not None:
        positive_int("num", num)
        steps = np.unique(np.linspace(0, len(imgs) - 1, min(num, len(imgs))).round().astype(int))
        imgs = imgs[steps]
        if labels is None:
            labels = [f"t={t}" for t in steps]
        elif len(labels) != len(imgs):
            labels = [labels[t] for t in steps]
    n = len(imgs)
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels: expected {n} labels (one per frame), got {len(labels)}")
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(1.3 * ncols, 1.3 * nrows + (0.4 if title else 0.0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(imgs[i], interpolation="nearest")
        ax.set_xticks([])  # keep the frame's outline: Pendulum's background is white
        ax.set_yticks([])
        if labels is not None:
            ax.set_title(labels[i], fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


# ---- what the model sees (arrays from planet_colab.imagination) ----------------------------------
def plot_reconstructions(real: Any, recon: Any, num: int = 8, title: str | None = None) -> Figure:
    """Real frames (top row) above the model's reconstructions (bottom row) at `num` evenly spaced steps."""
    real_u8, recon_u8 = as_frames(real, "real"), as_frames(recon, "recon")
    if real_u8.shape != recon_u8.shape:
        raise ValueError(f"real and recon must have the same shape, got {real_u8.shape} and {recon_u8.shape}")
    steps = np.unique(np.linspace(0, len(real_u8) - 1, min(int(num), len(real_u8))).round().astype(int))
    fig = Figure(figsize=(1.3 * len(steps) + 0.6, 3.0), layout="constrained")
    axes = fig.subplots(2, len(steps), squeeze=False)
    for j, t in enumerate(steps):
        for i, (imgs, name) in enumerate(((real_u8, "real"), (recon_u8, "decoded"))):
            ax = axes[i, j]
            ax.imshow(imgs[t], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t={t}", fontsize=8)
            if j == 0:
                ax.set_ylabel(name)
    if title:
        fig.suptitle(title)
    return fig


def plot_open_loop(result: Mapping[str, Any], title: str | None = None, *,
                   iterations_trained: int | None = None) -> Figure:
    """Imagination vs reality: real frames, model frames (context | imagined), error, and rewards if given;
    `iterations_trained` below EARLY_ITERATIONS adds why the model's frames look like noise."""
    real, pred = as_frames(result["real"], "real"), as_frames(result["pred"], "pred")
    if real.shape != pred.shape:
        raise ValueError(f"real and pred must have the same shape, got {real.shape} and {pred.shape}")
    context, start, n = int(result["context"]), int(result.get("start", 0)), len(real)
    has_reward = "pred_reward" in result and "real_reward" in result
    nrows = 4 if has_reward else 3
    fig = Figure(figsize=(max(0.95 * n + 0.8, 6.5), 3.4 + (1.6 if has_reward else 0.0)), layout="constrained")
    grid = fig.add_gridspec(nrows, n, height_ratios=[1, 1, 1] + ([1.6] if has_reward else []))
    err = np.abs(real.astype(np.int16) - pred.astype(np.int16)).astype(np.uint8)
    colours = ["tab:green" if j < context else "tab:red" for j in range(n)]
    for i, (imgs, name) in enumerate(((real, "real"), (pred, "model"), (err, "|error|"))):
        for j in range(n):
            ax = fig.add_subplot(grid[i, j])
            ax.imshow(imgs[j], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color(colours[j])
                spine.set_linewidth(2)
            if i == 0:
                label = f"t={start + j}" if j < context else f"+{j - context + 1}"  # steps imagined
                ax.set_title(label, fontsize=8, color=colours[j])
            if j == 0:
                ax.set_ylabel(name)
    if has_reward:
        ax = fig.add_subplot(grid[3, :])
        steps = np.arange(1, len(result["pred_reward"]) + 1)
        ax.plot(steps, result["real_reward"], marker="o", label="real reward")
        ax.plot(steps, result["pred_reward"], marker="x", label="imagined reward")
        ax.set_xlabel("imagined step")
        ax.set_xticks(steps)
        _legend_beside(ax)
    heading = title or (f"imagination vs reality: {context} frames filtered (green), "
                        f"then {n - context} imagined (red)")
    if iterations_trained is not None and iterations_trained < EARLY_ITERATIONS:
        heading += (f"\nthe model has trained only {iterations_trained} iteration(s): blurred frames and "
                    "wrong rewards are what an early world model predicts, not a fault")
    fig.suptitle(heading, fontsize=10)
    return fig
