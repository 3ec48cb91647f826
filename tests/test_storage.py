"""EpisodeStorage: exact round-trip, numbering, atomic writes, bad input refused, damaged files quarantined."""

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from planet_colab import storage as storage_mod
from planet_colab.storage import DamagedEpisodeError, DamagedEpisodeWarning, EpisodeStorage


def make_episode(length=5, action_dim=1, seed=0):
    """Per-step lists as an agent would produce them: obs, action, python-float reward, terminal."""
    rng = np.random.default_rng(seed)
    obs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(length)]
    action = [rng.uniform(-1, 1, action_dim).astype(np.float32) for _ in range(length)]
    reward = [float(r) for r in rng.normal(size=length)]
    terminal = [False] * (length - 1) + [True]
    return obs, action, reward, terminal


def episode_files(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("episode_"))


def test_round_trip_is_exact(tmp_path):
    store = EpisodeStorage(tmp_path / "episodes")
    obs, action, reward, terminal = make_episode(length=7, action_dim=2)
    path = store.add_episode(obs, action, reward, terminal)
    assert path.name == "episode_000001.npz"
    ep = store.load_episode(path)
    np.testing.assert_array_equal(ep["obs"], np.stack(obs))
    np.testing.assert_array_equal(ep["action"], np.stack(action))
    np.testing.assert_array_equal(ep["reward"], np.asarray(reward, dtype=np.float32))
    np.testing.assert_array_equal(ep["terminal"], terminal)
    assert {k: v.dtype for k, v in ep.items()} == {
        "obs": np.uint8, "action": np.float32, "reward": np.float32, "terminal": np.bool_}
    assert ep["obs"].shape == (7, 64, 64, 3) and ep["action"].shape == (7, 2)


def test_arrays_and_scalar_actions_are_accepted(tmp_path):
    store = EpisodeStorage(tmp_path / "episodes")
    obs = np.zeros((3, 64, 64, 3), np.int64)  # integer pixels in range are converted
    path = store.add_episode(obs, [0.5, -0.5, 1.0], np.zeros(3), np.array([0, 0, 1]))
    ep = store.load_episode(path)
    assert ep["action"].shape == (3, 1) and ep["terminal"].tolist() == [False, False, True]


def test_numbering_continues_after_reopen_and_never_reuses_quarantined(tmp_path):
    store = EpisodeStorage(tmp_path / "episodes")
    for seed in range(3):
        store.add_episode(*make_episode(seed=seed))
    assert store.num_episodes == 3
    (tmp_path / "episodes" / "episode_000003.npz").write_bytes(b"garbage")
    with pytest.warns(DamagedEpisodeWarning, match="episode_000003"):
        with pytest.raises(DamagedEpisodeError):
            store.load_episode(tmp_path / "episodes" / "episode_000003.npz")
    reopened = EpisodeStorage(tmp_path / "episodes")
    assert [p.name for p in reopened.episode_paths] == ["episode_000001.npz", "episode_000002.npz"]
    assert reopened.add_episode(*make_episode()).name == "episode_000004.npz"


def test_explicit_index_writes_that_number_and_refuses_overwrite(tmp_path):
    store = EpisodeStorage(tmp_path / "episodes")
    assert not store.has_episode(7)
    path = store.add_episode(*make_episode(), index=7)
    assert path == store.path_for(7) and store.has_episode(7)
    with pytest.raises(ValueError, match="already exists"):
        store.add_episode(*make_episode(seed=1), index=7)
    assert store.add_episode(*make_episode()).name == "episode_000008.npz"
    # Gaps are fine: a resumed loop fills exactly the numbers it needs.
    assert store.add_episode(*make_episode(), index=2).name == "episode_000002.npz"
    assert [p.name for p in store.episode_paths] == [
        "episode_000002.npz", "episode_000007.npz", "episode_000008.npz"]
    with pytest.raises(ValueError, match="index"):
        store.path_for(0)


def _bad(field, **changes):
    obs, action, reward, terminal = make_episode(length=4)
    episode = {"obs": obs, "action": action, "reward": reward, "terminal": terminal}
    episode.update(changes)
    return pytest.param(episode, field, id=field + ":" + "/".join(changes))


@pytest.mark.parametrize("episode, field", [
    _bad("lengths differ", reward=[0.0] * 3),
    _bad("obs", obs=np.zeros((4, 32, 32, 3), np.uint8)),
    _bad("obs", obs=np.zeros((4, 64, 64, 3), np.float32)),
    _bad("obs", obs=np.full((4, 64, 64, 3), 300, np.int64)),
    _bad("obs", obs=[np.zeros((64, 64, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)] * 2),
    _bad("reward", reward=[0.0, float("nan"), 0.0, 0.0]),
    _bad("action", action=np.full((4, 1), 2.0, np.float32)),
    _bad("action", action=np.zeros((4, 1, 1), np.float32)),
    _bad("terminal", terminal=[0, 2, 0, 0]),
    _bad("empty", obs=np.zeros((0, 64, 64, 3), np.uint8), action=np.zeros((0, 1)), reward=[], terminal=[]),
])
def test_bad_input_raises_naming_the_field_and_writes_nothing(tmp_path, episode, field):
    store = EpisodeStorage(tmp_path / "episodes")
    with pytest.raises(ValueError, match=field):
        store.add_episode(episode["obs"], episode["action"], episode["reward"], episode["terminal"])
    assert list((tmp_path / "episodes").iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "missing key", "inconsistent lengths"])
def test_damaged_file_is_quarantined_with_a_warning_never_deleted(tmp_path, damage):
    store = EpisodeStorage(tmp_path / "episodes")
    good = store.add_episode(*make_episode(seed=1))
    bad = store.path_for(2)
    if damage == "truncated":
        data = store.add_episode(*make_episode(seed=2)).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "not a zip":
        bad.write_bytes(b"this is not an npz file")
    elif damage == "missing key":
        np.savez_compressed(bad, obs=np.zeros((3, 64, 64, 3), np.uint8))
    else:
        np.savez_compressed(bad, obs=np.zeros((3, 64, 64, 3), np.uint8), action=np.zeros((3, 1), np.float32),
                            reward=np.zeros(2, np.float32), terminal=np.zeros(3, bool))
    content = bad.read_bytes()
    with pytest.warns(DamagedEpisodeWarning, match="episode_000002.npz"):
        with pytest.raises(DamagedEpisodeError):
            store.load_episode(bad)
    assert store.episode_paths == [good]
    moved = tmp_path / "quarantine" / "episode_000002.npz"
    assert moved.read_bytes() == content


def test_same_number_quarantined_twice_keeps_both_copies(tmp_path):
    store = EpisodeStorage(tmp_path / "episodes")
    for attempt in range(2):
        store.path_for(1).write_bytes(b"bad %d" % attempt)
        with pytest.warns(DamagedEpisodeWarning), pytest.raises(DamagedEpisodeError):
            store.load_episode(store.path_for(1))
    assert sorted(p.name for p in (tmp_path / "quarantine").iterdir()) == [
        "episode_000001.1.npz", "episode_000001.npz"]
    assert store.add_episode(*make_episode()).name == "episode_000002.npz"


def test_drive_dropping_during_read_quarantines_nothing(tmp_path, monkeypatch):
    store = EpisodeStorage(tmp_path / "episodes")
    path = store.add_episode(*make_episode())

    def disconnected(*args, **kwargs):
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    monkeypatch.setattr(storage_mod.np, "load", disconnected)
    with pytest.raises(OSError, match="Transport endpoint"):
        store.load_episode(path)
    assert path.exists() and not (tmp_path / "quarantine").exists()


def test_drive_dropping_during_write_leaves_no_episode_file(tmp_path, monkeypatch):
    store = EpisodeStorage(tmp_path / "episodes")

    def disconnected(fd):
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    monkeypatch.setattr(storage_mod.os, "fsync", disconnected)
    with pytest.raises(OSError, match="Transport endpoint"):
        store.add_episode(*make_episode())
    assert list((tmp_path / "episodes").iterdir()) == []
    monkeypatch.undo()
    assert store.add_episode(*make_episode()).name == "episode_000001.npz"


def test_leftover_temporary_is_ignored_and_cleaned_on_next_open(tmp_path):
    episodes = tmp_path / "episodes"
    store = EpisodeStorage(episodes)
    store.add_episode(*make_episode())
    stale = episodes / ".tmp_episode_000002_deadbeef.partial"
    fresh = episodes / ".tmp_episode_000003_cafebabe.partial"
    stale.write_bytes(b"half an episode")
    fresh.write_bytes(b"another writer, still busy")
    old = time.time() - 2 * storage_mod.TEMP_MAX_AGE_S
    os.utime(stale, (old, old))
    reopened = EpisodeStorage(episodes)
    assert not stale.exists()
    assert fresh.exists()  # may belong to a live writer in another process: left alone, but ignored
    assert reopened.num_episodes == 1
    assert reopened.add_episode(*make_episode()).name == "episode_000002.npz"


KILLED_WRITER = """
import os, sys, time
import numpy as np
from planet_colab import storage
from planet_colab.storage import EpisodeStorage
real_fsync = os.fsync
def stall(fd):
    real_fsync(fd)
    print("writing", flush=True)
    time.sleep(60)
storage.os.fsync = stall
obs = np.zeros((20, 64, 64, 3), np.uint8)
EpisodeStorage(sys.argv[1]).add_episode(obs, np.zeros((20, 1)), np.zeros(20), np.zeros(20, bool))
"""


def test_process_killed_mid_write_leaves_no_episode_a_reader_would_load(tmp_path):
    episodes = tmp_path / "episodes"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(episodes)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    leftovers = list(episodes.iterdir())
    assert len(leftovers) == 1 and not leftovers[0].name.startswith("episode_")  # the temporary only
    store = EpisodeStorage(episodes)
    assert store.num_episodes == 0 and store.episode_paths == []
    assert store.clean_temporaries(max_age_s=0) == leftovers
    assert list(episodes.iterdir()) == []


def test_empty_storage(tmp_path):
    store = EpisodeStorage(tmp_path / "run" / "episodes")
    assert store.num_episodes == 0 and store.episode_paths == [] and store.next_index() == 1
    assert store.quarantine_dir == tmp_path / "run" / "quarantine"


def test_unrelated_files_are_ignored(tmp_path):
    store = EpisodeStorage(tmp_path / "episodes")
    for name in ("notes.txt", "episode_1.npz", "episode_000001.npz.bak", ".episode_000005.npz"):
        (tmp_path / "episodes" / name).write_text("x")
    assert store.episode_paths == []
    assert store.add_episode(*make_episode()).name == "episode_000001.npz"


def _store_raw(path, **changes):
    """Write an episode file directly, as another program (or an older version) might have."""
    obs, action, reward, terminal = make_episode(length=4)
    arrays = {"obs": np.stack(obs), "action": np.stack(action), "reward": np.asarray(reward, np.float32),
              "terminal": np.asarray(terminal)}
    arrays.update(changes)
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize("changes, problem", [
    ({"action": np.full((4, 1), 1.5, np.float32)}, "action: values must be in \\[-1, 1\\]"),
    ({"reward": np.array([0, 1e30, 0, 0], np.float32)}, "reward: 1e\\+30 at step 1"),
    ({"reward": np.array([0, 0, -np.inf, 0], np.float32)}, "reward: non-finite value \\(-inf\\) at step 2"),
    ({"terminal": np.zeros(4, np.float32)}, "terminal"),
    ({"obs": np.zeros((4, 64, 64, 3), np.float32)}, "obs"),
])
def test_stored_values_out_of_range_are_quarantined_at_load(tmp_path, changes, problem):
    store = EpisodeStorage(tmp_path / "episodes")
    good = store.add_episode(*make_episode())
    bad = store.path_for(2)
    _store_raw(bad, **changes)
    with pytest.warns(DamagedEpisodeWarning, match=f"episode_000002.npz.*{problem}"):
        with pytest.raises(DamagedEpisodeError, match=problem):
            store.load_episode(bad)
    assert store.episode_paths == [good] and (tmp_path / "quarantine" / "episode_000002.npz").exists()


def test_absurd_reward_is_refused_at_write_too(tmp_path):
    store = EpisodeStorage(tmp_path / "episodes")
    obs, action, reward, terminal = make_episode(length=4)
    with pytest.raises(ValueError, match="reward: 1e\\+30"):
        store.add_episode(obs, action, [0.0, 1e30, 0.0, 0.0], terminal)
    store.add_episode(obs, action, [-storage_mod.MAX_ABS_REWARD, 0.0, 0.0, 16.0], terminal)  # the bound itself is fine


def test_only_names_the_writer_makes_count_as_episodes(tmp_path):
    store = EpisodeStorage(tmp_path / "episodes")
    first = store.add_episode(*make_episode())
    stray = tmp_path / "episodes" / "episode_0000099.npz"  # 7 digits with a leading zero: not path_for(99)
    stray.write_bytes(first.read_bytes())
    big = store.add_episode(*make_episode(), index=1234567)  # 7 digits the writer does make
    assert store.episode_paths == [first, big] and not store.has_episode(99)
    assert storage_mod.episode_number(stray) is None and storage_mod.episode_number(big) == 1234567
    assert store.next_index() == 1234568 and stray.exists()  # ignored, not touched


def test_same_episode_always_gives_the_same_file(tmp_path, monkeypatch):
    a = EpisodeStorage(tmp_path / "a").add_episode(*make_episode(seed=3))
    later = time.time() + 3 * 3600
    monkeypatch.setattr(time, "time", lambda: later)  # a later write, whatever the clock says
    b = EpisodeStorage(tmp_path / "b").add_episode(*make_episode(seed=3))
    assert a.read_bytes() == b.read_bytes()


def test_a_read_only_storage_creates_moves_and_deletes_nothing(tmp_path):
    reader = EpisodeStorage(tmp_path / "episodes", read_only=True)
    assert reader.num_episodes == 0 and not (tmp_path / "episodes").exists()
    with pytest.raises(ValueError, match="read-only"):
        reader.add_episode(*make_episode())
    EpisodeStorage(tmp_path / "episodes").add_episode(*make_episode())
    bad = tmp_path / "episodes" / "episode_000002.npz"
    bad.write_bytes(b"half uploaded")
    stale = tmp_path / "episodes" / ".episode_000003.npz.tmp-1-0123abcd"
    stale.write_bytes(b"")
    os.utime(stale, (0, 0))
    reader = EpisodeStorage(tmp_path / "episodes", read_only=True)
    with pytest.warns(DamagedEpisodeWarning, match="left in place"), pytest.raises(DamagedEpisodeError):
        reader.load_episode(bad)
    assert bad.exists() and stale.exists() and not (tmp_path / "quarantine").exists()
    assert reader.num_episodes == 2


def test_the_newest_episodes_that_load_skip_one_still_syncing(tmp_path):
    writer = EpisodeStorage(tmp_path / "episodes")
    for seed in range(3):
        writer.add_episode(*make_episode(seed=seed))
    first_two = [writer.load_episode(p) for p in writer.episode_paths[:2]]
    newest = writer.episode_paths[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # Drive has synced only its beginning
    reader = EpisodeStorage(tmp_path / "episodes", read_only=True)
    with pytest.warns(DamagedEpisodeWarning, match="episode_000003.npz.*left in place"):
        found = reader.newest_episodes(2)
    assert [p.name for p, _ in found] == ["episode_000001.npz", "episode_000002.npz"]  # oldest first
    for (_, got), want in zip(found, first_two):
        assert all(np.array_equal(got[k], want[k]) for k in want)
    assert newest.exists()  # a reader moves nothing
    with pytest.raises(ValueError, match="holds no episode that loads"):
        EpisodeStorage(tmp_path / "empty", read_only=True).newest_episodes(1)
