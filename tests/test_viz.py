"""viz.py: every figure renders to a PNG of the promised size (the arrays it draws come from a real
stored episode and an untrained world model: see the `tiny_run` fixture in conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from planet_colab import viz
from planet_colab.config import get_config
from planet_colab.imagination import open_loop_predict, reconstruct_episode

DPI = 50


def metrics_rows(n: int = 4) -> list[dict]:
    """Rows shaped like metrics.jsonl: eval keys only on every second iteration."""
    rows = []
    for i in range(n):
        row = {"iteration": i, "episodes": 3 + i, "env_steps": 30 * (3 + i), "loss": 10.0 - i,
               "obs_loss": 8.0 - i, "reward_loss": 1.0, "kl_loss": 3.0, "grad_norm": 5.0 + i,
               "collect_return": -100.0 + i, "collect_length": 15.0, "train_s": 1.0, "collect_s": 0.5,
               "eval_s": 0.0, "io_s": 0.1, "seconds": 1.6, "checkpoint_s": 0.05}
        if i % 2:
            row.update(eval_mean=-90.0 + i, eval_std=5.0, eval_returns=[-95.0 + i, -85.0 + i], eval_s=0.3)
        rows.append(row)
    return rows


def assert_png(fig, path) -> None:
    """The saved PNG exists, is non-trivial and is exactly figsize × DPI pixels."""
    viz.save_figure(fig, path, dpi=DPI)
    assert path.stat().st_size > 1000
    w, h = fig.get_size_inches()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (round(w * DPI), round(h * DPI))
        assert len(set(np.asarray(im.convert("L")).ravel().tolist())) > 2  # something was drawn


def test_learning_curves_draw_losses_returns_and_timings(tmp_path):
    fig = viz.plot_learning_curves(metrics_rows(), title="smoke")
    assert_png(fig, tmp_path / "curves.png")
    losses, returns, timing, _ = fig.axes
    assert [line.get_label() for line in losses.lines] == ["obs", "reward", "kl"]
    rows = [{**row, "kl": 0.5} for row in metrics_rows()]  # rows since the KL itself is recorded beside its term
    losses = viz.plot_learning_curves(rows, title="smoke").axes[0]
    assert [line.get_label() for line in losses.lines] == ["obs", "reward", "kl", "KL itself"]
    assert [t.get_text() for t in timing.get_legend().get_texts()] == ["train", "collect", "eval", "io",
                                                                        "checkpoint"]
    assert any("evaluation" in t.get_text() for t in returns.get_legend().get_texts())


def test_learning_curves_of_a_fresh_run_say_no_iterations_yet(tmp_path):
    fig = viz.plot_learning_curves([])
    assert_png(fig, tmp_path / "empty.png")
    assert "no iterations yet" in fig.axes[0].texts[0].get_text()


def test_learning_curves_refuse_rows_without_iteration():
    with pytest.raises(ValueError, match="iteration"):
        viz.plot_learning_curves([{"loss": 1.0}])


def test_live_dashboard_replaces_iterations_redone_after_a_resume(tmp_path):
    rows = metrics_rows(4)
    # metrics.jsonl held 4 rows but the checkpoint was after iteration 1: iterations 2, 3 are redone.
    dash = viz.LiveDashboard(total_iterations=4, rows=rows, show=False)
    dash.update({**rows[2], "loss": 1.0})
    assert [r["iteration"] for r in dash.rows] == [0, 1, 2]
    assert dash.rows[-1]["loss"] == 1.0
    dash.update(rows[3])
    assert "iteration 4 of 4" in dash.fig._suptitle.get_text()
    assert_png(dash.fig, tmp_path / "dashboard.png")
    dash.close()


def test_frames_grid_of_a_stored_episode(tiny_run, tmp_path):
    _, _, episode, _ = tiny_run
    frames = episode["obs"][:6]
    fig = viz.plot_frames(frames, ncols=3, labels=[f"t={t}" for t in range(6)], title="seed episode")
    assert_png(fig, tmp_path / "frames.png")
    with pytest.raises(ValueError, match="labels"):
        viz.plot_frames(frames, labels=["only one"])
    with pytest.raises(ValueError, match="frames"):
        viz.plot_frames(np.zeros((2, 64, 64)))


def test_frames_grid_can_pick_evenly_spaced_steps(tiny_run):
    _, _, episode, _ = tiny_run
    fig = viz.plot_frames(episode["obs"], num=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["t=0", "t=5", "t=9", "t=14"]


def test_config_is_printed_as_name_value_columns():
    text = viz.format_config(get_config("smoke"), columns=3)
    assert "preset = 'smoke'" in text and "horizon = 3" in text
    assert len(text.splitlines()) == -(-len(get_config("smoke").to_dict()) // 3)


def test_reconstructions_and_open_loop_figures_render(tiny_run, tmp_path):
    config, _, episode, model = tiny_run
    recon = reconstruct_episode(model, episode["obs"], episode["action"], config=config,
                                generator=torch.Generator().manual_seed(0))
    assert_png(viz.plot_reconstructions(episode["obs"], recon, num=5), tmp_path / "recon.png")
    result = open_loop_predict(model, episode["obs"], episode["action"], episode["reward"], config=config,
                               context=4, start=2, generator=torch.Generator().manual_seed(0))
    assert_png(viz.plot_open_loop(result), tmp_path / "open_loop.png")


def test_an_early_models_open_loop_says_why_it_looks_like_noise_and_legends_sit_off_the_data(tiny_run):
    config, _, episode, model = tiny_run
    result = open_loop_predict(model, episode["obs"], episode["action"], episode["reward"], config=config,
                               context=4, generator=torch.Generator().manual_seed(0))
    early = viz.plot_open_loop(result, iterations_trained=2)
    assert "trained only 2 iteration(s)" in early._suptitle.get_text()
    assert "trained only" not in viz.plot_open_loop(result, iterations_trained=50)._suptitle.get_text()
    early.canvas.draw()
    assert any(ax.get_legend() is not None for ax in early.axes)
    for ax in early.axes:
        legend = ax.get_legend()
        if legend is not None:  # entirely to the right of the plotted area
            assert legend.get_window_extent().x0 >= ax.get_window_extent().x1
