"""video.py: GIFs and MP4s play back with every frame, the file name picks the format, and the
notebook players embed the clip."""

from __future__ import annotations

import numpy as np
import pytest
from skip_reasons import VIDEO_EXTRA
from PIL import Image

from planet_colab import video


def test_save_gif_writes_a_playable_gif_with_every_frame(tmp_path):
    frames = np.zeros((7, 64, 64, 3), np.uint8)
    for t in range(7):
        frames[t, :, 8 * t:8 * t + 8] = 255  # a bar moving right: no two frames alike
    path = video.save_gif(frames, tmp_path / "clip" / "episode.gif", fps=10, scale=2)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.size == (128, 128)
        assert im.n_frames == 7
        assert im.info["duration"] == 100
        im.seek(3)
        assert np.asarray(im.convert("RGB"))[0, 8 * 3 * 2 + 1].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="fps"):
        video.save_gif(frames, tmp_path / "bad.gif", fps=0)


def test_inline_videos_embed_the_clip(tiny_run):
    _, _, episode, _ = tiny_run
    assert 'src="data:image/gif;base64,' in video.gif_html(episode["obs"][:5]).data
    player = video.video_html(episode["obs"][:3], fps=5, scale=1).data
    assert "<script" in player and player.count("data:image/png;base64") == 3


def test_video_format_follows_the_extension(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    assert video.save_video(frames, tmp_path / "a.gif").read_bytes()[:6] == b"GIF89a"
    with pytest.raises(ValueError, match=r"unknown video format '\.avi'; name it \.gif or \.mp4"):
        video.save_video(frames, tmp_path / "a.avi")


def test_mp4_round_trip_keeps_every_frame(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason=VIDEO_EXTRA)
    frames = np.random.default_rng(0).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    path = video.save_video(frames, tmp_path / "a.mp4", fps=10)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (256, 256) and sum(1 for _ in reader) == 9  # written 4× for viewing
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]  # no temporary left behind
