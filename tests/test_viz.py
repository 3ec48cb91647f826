"""viz.py: every figure renders to a PNG of the promised size, model-side functions return the arrays
the plots need, and GIFs play back with every frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from planet_colab import viz
from planet_colab.config import get_config
from planet_colab.env import collect_seed_episodes
from planet_colab.models import WorldModel
from planet_colab.storage import EpisodeStorage

DPI = 50


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A smoke-sized run: real seed episodes on disk and an (untrained) world model."""
    config = get_config("smoke")
    storage = EpisodeStorage(tmp_path_factory.mktemp("run") / "episodes")
    collect_seed_episodes(config, storage, progress=False)
    episode = storage.load_episode(storage.episode_paths[0])
    torch.manual_seed(0)
    model = WorldModel(episode["action"].shape[1], config)
    return config, storage, episode, model


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


def test_reconstructions_are_one_decoded_frame_per_step(tiny_run, tmp_path):
    _, _, episode, model = tiny_run
    recon = viz.reconstruct_episode(model, episode["obs"], episode["action"],
                                    generator=torch.Generator().manual_seed(0))
    assert recon.shape == episode["obs"].shape and recon.dtype == np.uint8
    again = viz.reconstruct_episode(model, episode["obs"], episode["action"],
                                    generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(recon, again)
    assert_png(viz.plot_reconstructions(episode["obs"], recon, num=5), tmp_path / "recon.png")
    with pytest.raises(ValueError, match="actions"):
        viz.reconstruct_episode(model, episode["obs"], episode["action"][:-1])


def test_open_loop_filters_context_then_imagines_horizon(tiny_run, tmp_path):
    config, _, episode, model = tiny_run
    result = viz.open_loop_predict(model, episode["obs"], episode["action"], episode["reward"],
                                   context=4, start=2, generator=torch.Generator().manual_seed(0))
    span = 4 + config.horizon
    assert result["real"].shape == result["pred"].shape == (span, 64, 64, 3)
    np.testing.assert_array_equal(result["real"], episode["obs"][2:2 + span])
    assert result["mse"].shape == (span,) and (result["mse"] >= 0).all()
    assert result["pred_reward"].shape == result["real_reward"].shape == (config.horizon,)
    np.testing.assert_array_equal(result["real_reward"], episode["reward"][5:5 + config.horizon])
    assert_png(viz.plot_open_loop(result), tmp_path / "open_loop.png")


def test_open_loop_refuses_a_span_longer_than_the_episode(tiny_run):
    _, _, episode, model = tiny_run
    with pytest.raises(ValueError, match="exceeds the episode"):
        viz.open_loop_predict(model, episode["obs"], episode["action"], context=len(episode["obs"]))


def test_storage_table_measures_float32_uint8_and_compressed_files(tiny_run):
    _, storage, episode, _ = tiny_run
    rows = viz.storage_size_table(storage.episode_dir, project_to=100)
    f32, u8, npz = rows
    assert [r["episodes"] for r in rows] == [storage.num_episodes] * 3
    steps = sum(len(storage.load_episode(p)["reward"]) for p in storage.episode_paths)
    assert u8["total_mb"] * 1e6 == steps * (64 * 64 * 3 + 4 * episode["action"].shape[1] + 4 + 1)
    assert f32["times_smaller_than_float32"] == 1.0
    assert 3.9 < u8["times_smaller_than_float32"] < 4.0  # the seed's "4× smaller"; small arrays stay 4-byte
    assert npz["total_mb"] * 1e6 == sum(p.stat().st_size for p in storage.episode_paths)
    assert npz["times_smaller_than_float32"] > u8["times_smaller_than_float32"]
    text = viz.format_size_table(rows)
    assert "compressed .npz on disk" in text and "mb_per_100_episodes" in text


def test_storage_table_says_when_there_are_no_episodes(tmp_path):
    with pytest.raises(ValueError, match="no episode files"):
        viz.storage_size_table(tmp_path)


def test_save_gif_writes_a_playable_gif_with_every_frame(tmp_path):
    frames = np.zeros((7, 64, 64, 3), np.uint8)
    for t in range(7):
        frames[t, :, 8 * t:8 * t + 8] = 255  # a bar moving right: no two frames alike
    path = viz.save_gif(frames, tmp_path / "clip" / "episode.gif", fps=10, scale=2)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.size == (128, 128)
        assert im.n_frames == 7
        assert im.info["duration"] == 100
        im.seek(3)
        assert np.asarray(im.convert("RGB"))[0, 8 * 3 * 2 + 1].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="fps"):
        viz.save_gif(frames, tmp_path / "bad.gif", fps=0)


def test_inline_videos_embed_the_clip(tiny_run):
    _, _, episode, _ = tiny_run
    assert 'src="data:image/gif;base64,' in viz.gif_html(episode["obs"][:5]).data
    player = viz.video_html(episode["obs"][:3], fps=5, scale=1).data
    assert "<script" in player and player.count("data:image/png;base64") == 3
