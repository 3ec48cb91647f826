"""What the notebooks show: learning curves, frames, reconstructions, open-loop predictions, videos,
the seed's storage-size table and a live training dashboard.

Figures are `matplotlib.figure.Figure` objects built without pyplot, so nothing is shown twice by the
inline backend, nothing leaks between tests, and the Agg backend in CI needs no display; `show(fig)`
puts one in a notebook as a PNG, which looks the same under Colab's ipywidgets 7.7 and Jupyter's 8.
Functions that need the model (`reconstruct_episode`, `open_loop_predict`) return arrays; the plot
functions only draw arrays.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from planet_colab.safeio import write_atomic

__all__ = [
    "show", "figure_png", "save_figure", "format_config",
    "plot_learning_curves", "LiveDashboard",
    "plot_frames", "reconstruct_episode", "plot_reconstructions",
    "open_loop_predict", "plot_open_loop",
    "storage_size_table", "format_size_table",
    "save_gif", "gif_html", "video_html",
]

# Phases of one iteration as timed by train_planner (seconds), drawn as stacked bars.
TIME_KEYS = ("train_s", "collect_s", "eval_s", "io_s", "checkpoint_s")
LOSS_CURVES = ("obs_loss", "reward_loss", "kl_loss")


# ---- figures in notebooks and files -------------------------------------------------------------
def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write the figure as a PNG of exactly figsize × dpi pixels (no tight cropping); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, figure_png(fig, dpi))
    return path


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
def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """(N, H, W, 3) uint8 from uint8 or floats in [0, 1]; ValueError otherwise."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError(f"{name}: got no frames")
        frames = np.stack([_to_numpy(f) for f in frames])
    arr = _to_numpy(frames)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: expected images of shape (N, H, W, 3), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: got no frames")
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
            raise ValueError(f"{name}: float images must be in [0, 1], got range "
                             f"[{arr.min():.3g}, {arr.max():.3g}]")
        return np.round(arr * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{name}: integer pixels must be in 0..255, got range [{arr.min()}, {arr.max()}]")
        return arr.astype(np.uint8)
    raise ValueError(f"{name}: expected uint8 or float pixels, got dtype {arr.dtype}")


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

    for key in LOSS_CURVES:
        x, y = _series(rows, key)
        if len(x):
            ax_loss.plot(x, y, marker=".", label=key.removesuffix("_loss"))
    ax_loss.set_title("world-model losses (per iteration mean)")
    if ax_loss.lines:
        ax_loss.legend(fontsize="small")
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
        ax_ret.legend(fontsize="small")

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
        if not isinstance(total_iterations, int) or total_iterations <= 0:
            raise ValueError(f"total_iterations must be a positive integer, got {total_iterations!r}")
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

    def close(self) -> None:
        """Close the progress bar (the figure stays displayed)."""
        if self._bar is not None:
            self._bar.close()


# ---- frames --------------------------------------------------------------------------------------
def plot_frames(frames: Any, ncols: int = 8, labels: Sequence[str] | None = None,
                title: str | None = None, num: int | None = None) -> Figure:
    """A grid of images (N, H, W, 3), uint8 or floats in [0, 1]; `num` picks that many evenly spaced, labelled t=…."""
    imgs = _as_frames(frames)
    if num is not None:
        if not isinstance(num, int) or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}")
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


# ---- what the model sees -------------------------------------------------------------------------
def _model_inputs(model: Any, obs: Any, actions: Any) -> tuple[Any, Any]:
    """Preprocessed obs (T, 1, 64, 64, 3) and actions (T, 1, A) on the model's device."""
    import torch

    from planet_colab.models import preprocess_obs

    obs_u8 = _as_frames(obs, "obs")
    if obs_u8.shape[1:] != (64, 64, 3):
        raise ValueError(f"obs: expected (T, 64, 64, 3) observations, got {obs_u8.shape}")
    act = _to_numpy(actions).astype(np.float32)
    if act.ndim == 1:
        act = act[:, None]
    if act.ndim != 2 or len(act) != len(obs_u8) or act.shape[1] != model.action_dim:
        raise ValueError(f"actions: expected shape (T, A) = ({len(obs_u8)}, {model.action_dim}) "
                         f"matching obs, got {act.shape}")
    device = next(model.parameters()).device
    # Bin centres (no dequantisation noise): the picture is the same every time it is drawn.
    obs_pre = preprocess_obs(torch.from_numpy(obs_u8).to(device), model.config.bit_depth, noise=False)
    return obs_pre[:, None], torch.from_numpy(act).to(device)[:, None]


def _to_pixels(x: Any) -> np.ndarray:
    """Decoder output in the preprocessed space [-0.5, 0.5] → uint8 pixels."""
    return np.clip(np.round((_to_numpy(x).astype(np.float32) + 0.5) * 255.0), 0, 255).astype(np.uint8)


def reconstruct_episode(model: Any, obs: Any, actions: Any, generator: Any = None) -> np.ndarray:
    """Filter a stored episode with the model and decode every posterior state: (T, 64, 64, 3) uint8."""
    import torch

    obs_pre, act = _model_inputs(model, obs, actions)  # (T, 1, 64, 64, 3), (T, 1, A)
    with torch.no_grad():
        out = model(obs_pre, act, generator=generator)
    return _to_pixels(out["recon"][:, 0].float())  # (T, 64, 64, 3)


def plot_reconstructions(real: Any, recon: Any, num: int = 8, title: str | None = None) -> Figure:
    """Real frames (top row) above the model's reconstructions (bottom row) at `num` evenly spaced steps."""
    real_u8, recon_u8 = _as_frames(real, "real"), _as_frames(recon, "recon")
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


def open_loop_predict(model: Any, obs: Any, actions: Any, rewards: Any = None, *, context: int = 5,
                      horizon: int | None = None, start: int = 0, generator: Any = None) -> dict[str, Any]:
    """Filter `context` real frames, then imagine `horizon` steps with the recorded actions; arrays to plot.

    Returns real and pred (context + horizon, 64, 64, 3) uint8 (pred's first `context` frames are
    posterior reconstructions, the rest prior predictions), mse (context + horizon,) in [0, 1]
    pixel units, context, start, and with `rewards` given: pred_reward and real_reward (horizon,),
    reward(s_{t+1}) ≈ r_t as in the planner.
    """
    import torch

    horizon = model.config.horizon if horizon is None else horizon
    for name, value, low in (("context", context, 1), ("horizon", horizon, 1), ("start", start, 0)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    obs_pre, act = _model_inputs(model, obs, actions)  # (T, 1, 64, 64, 3), (T, 1, A)
    span = context + horizon
    if start + span > len(obs_pre):
        raise ValueError(f"start + context + horizon = {start + span} exceeds the episode's "
                         f"{len(obs_pre)} steps; use a smaller start, context or horizon")
    rew = None
    if rewards is not None:
        rew = _to_numpy(rewards).astype(np.float32).reshape(-1)
        if len(rew) != len(obs_pre):
            raise ValueError(f"rewards: expected {len(obs_pre)} values (one per step), got {len(rew)}")

    decoded, pred_reward = [], []
    with torch.no_grad():
        state = model.initial_state(1)
        prev = torch.zeros_like(act[0])  # a sequence starts with a zero previous action, as in training
        for t in range(start, start + context):
            state, _, _ = model.obs_step(state, prev, model.encode(obs_pre[t]), generator=generator)
            decoded.append(model.decode(state)[0])
            prev = act[t]
        for t in range(start + context, start + span):
            state, _, _ = model.img_step(state, prev, generator=generator)  # prior only: no o_t
            decoded.append(model.decode(state)[0])
            pred_reward.append(float(model.reward(state)[0]))
            prev = act[t]
    pred = _to_pixels(torch.stack(decoded).float())  # (context + horizon, 64, 64, 3)
    real = _as_frames(obs, "obs")[start:start + span]
    mse = ((real.astype(np.float32) - pred.astype(np.float32)) / 255.0) ** 2
    result: dict[str, Any] = {"real": real, "pred": pred, "mse": mse.mean(axis=(1, 2, 3)),
                              "context": int(context), "start": int(start)}
    if rew is not None:
        # The state reached by a_{t-1} predicts r_{t-1}.
        result["pred_reward"] = np.array(pred_reward, dtype=np.float32)
        result["real_reward"] = rew[start + context - 1:start + span - 1]
    return result


def plot_open_loop(result: Mapping[str, Any], title: str | None = None) -> Figure:
    """Imagination vs reality: real frames, model frames (context | imagined), error, and rewards if given."""
    real, pred = _as_frames(result["real"], "real"), _as_frames(result["pred"], "pred")
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
        ax.legend(fontsize="small")
    fig.suptitle(title or f"imagination vs reality: {context} frames filtered (green), "
                          f"then {n - context} imagined (red)", fontsize=10)
    return fig


# ---- the seed's storage table --------------------------------------------------------------------
def _episode_files(episodes: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(episodes, (str, os.PathLike)):
        folder = Path(episodes)
        if not folder.is_dir():
            raise ValueError(f"episodes: {folder} is not a directory of episode_*.npz files")
        paths = sorted(folder.glob("episode_*.npz"))
    else:
        paths = [Path(p) for p in episodes]
    if not paths:
        raise ValueError(f"episodes: no episode files found in {episodes}")
    return paths


def storage_size_table(episodes: str | os.PathLike | Sequence[str | os.PathLike],
                       project_to: int = 100) -> list[dict[str, Any]]:
    """Bytes of the real episode files as float32 arrays, as uint8 arrays and as compressed .npz (seed §2)."""
    paths = _episode_files(episodes)
    f32 = u8 = disk = steps = 0
    for path in paths:
        with np.load(path) as ep:
            arrays = {k: ep[k] for k in ep.files}
        if "obs" not in arrays:
            raise ValueError(f"{path}: not an episode file (no 'obs' array)")
        # float32 = what the model trains on: every array, pixels included, 4 bytes per value.
        f32 += sum(a.size * 4 for a in arrays.values())
        u8 += sum(a.nbytes for a in arrays.values())
        disk += path.stat().st_size
        steps += len(arrays["obs"])
    n = len(paths)
    rows = []
    for name, total in (("float32 arrays (obs in [0, 1])", f32),
                        ("uint8 arrays (obs in 0..255)", u8),
                        ("compressed .npz on disk", disk)):
        rows.append({"format": name, "episodes": n, "steps_per_episode": steps / n,
                     "total_mb": total / 1e6, "per_episode_mb": total / n / 1e6,
                     f"mb_per_{project_to}_episodes": total / n * project_to / 1e6,
                     "times_smaller_than_float32": f32 / total if total else float("nan")})
    return rows


def _number(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def format_size_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The storage table as aligned text for print()."""
    if not rows:
        raise ValueError("rows: empty storage table")
    keys = [k for k in rows[0] if k != "format"]
    header = ["format"] + keys
    cells = [[str(r["format"])] + [_number(r[k]) for k in keys] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    line = lambda items: "  ".join(s.ljust(w) if i == 0 else s.rjust(w)  # noqa: E731
                                   for i, (s, w) in enumerate(zip(items, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(c) for c in cells])


# ---- videos --------------------------------------------------------------------------------------
def _gif_bytes(frames: Any, fps: float, scale: int) -> bytes:
    from PIL import Image

    imgs = _as_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if scale > 1:
        imgs = imgs.repeat(scale, axis=1).repeat(scale, axis=2)  # nearest-neighbour: crisp pixels
    pil = [Image.fromarray(f) for f in imgs]
    buf = io.BytesIO()
    # Pillow merges identical consecutive frames (adding their durations): the clip's timing is kept.
    pil[0].save(buf, format="GIF", save_all=True, append_images=pil[1:],
                duration=max(1, round(1000 / fps)), loop=0)
    return buf.getvalue()


def save_gif(frames: Any, path: str | os.PathLike, fps: float = 15, scale: int = 1) -> Path:
    """Write frames (T, H, W, 3) as a looping GIF (optionally upscaled by `scale`); return the path."""
    data = _gif_bytes(frames, fps, scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return path


def gif_html(frames: Any, fps: float = 15, scale: int = 3) -> Any:
    """An inline, looping GIF of the frames as IPython HTML (no JavaScript, so it works everywhere)."""
    from IPython.display import HTML

    data = base64.b64encode(_gif_bytes(frames, fps, scale)).decode("ascii")
    return HTML(f'<img src="data:image/gif;base64,{data}" style="image-rendering: pixelated"/>')


def video_html(frames: Any, fps: float = 15, scale: int = 3) -> Any:
    """A player with play/pause/step controls (matplotlib's to_jshtml) for the frames."""
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    imgs = _as_frames(frames)
    size = imgs.shape[2] * scale / 100
    fig = Figure(figsize=(size, size * imgs.shape[1] / imgs.shape[2]), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    artist = ax.imshow(imgs[0], interpolation="nearest")
    anim = FuncAnimation(fig, lambda i: (artist.set_data(imgs[i]), artist)[1:],
                         frames=len(imgs), interval=1000 / fps, blit=False)
    return HTML(anim.to_jshtml(fps=fps, default_mode="loop"))
