"""storage_sizes.py: the size table measures the real episode files as float32, uint8 and .npz."""

from __future__ import annotations

import pytest

from planet_colab.storage_sizes import format_size_table, storage_size_table


def test_storage_table_measures_float32_uint8_and_compressed_files(tiny_run):
    _, storage, episode, _ = tiny_run
    rows = storage_size_table(storage.episode_dir, project_to=100)
    f32, u8, npz = rows
    assert [r["episodes"] for r in rows] == [storage.num_episodes] * 3
    steps = sum(len(storage.load_episode(p)["reward"]) for p in storage.episode_paths)
    assert u8["total_mb"] * 1e6 == steps * (64 * 64 * 3 + 4 * episode["action"].shape[1] + 4 + 1)
    assert f32["times_smaller_than_float32"] == 1.0
    assert 3.9 < u8["times_smaller_than_float32"] < 4.0  # the seed's "4× smaller"; small arrays stay 4-byte
    assert npz["total_mb"] * 1e6 == sum(p.stat().st_size for p in storage.episode_paths)
    assert npz["times_smaller_than_float32"] > u8["times_smaller_than_float32"]
    text = format_size_table(rows)
    assert "compressed .npz on disk" in text and "mb_per_100_episodes" in text


def test_storage_table_says_when_there_are_no_episodes(tmp_path):
    with pytest.raises(ValueError, match="no episode files"):
        storage_size_table(tmp_path)
