"""safeio: every run-directory writer survives a momentary Drive drop, and says clearly what a lasting one means."""

import errno
import os
import time

import numpy as np
import pytest
import torch

from planet_colab import safeio, video
from planet_colab.checkpoint import load_checkpoint, save_checkpoint
from planet_colab.config import Config, get_config
from planet_colab.storage import EpisodeStorage

DROPPED = (errno.ENOTCONN, "Transport endpoint is not connected")


def episode(seed=0, length=6):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (length, 64, 64, 3), dtype=np.uint8), rng.uniform(-1, 1, (length, 2)),
            rng.normal(size=length), [False] * (length - 1) + [True])


@pytest.fixture
def fail(monkeypatch):
    """fail("replace", times, errno, text): os.<name> raises that error on its first `times` calls."""
    calls = {}

    def install(name, times, code, text):
        real = getattr(os, name)
        calls[name] = 0

        def flaky(*args, **kwargs):
            calls[name] += 1
            if calls[name] <= times:
                raise OSError(code, text)
            return real(*args, **kwargs)

        monkeypatch.setattr(os, name, flaky)
        return calls

    return install


def test_retries_back_off_then_give_up(monkeypatch):
    slept = []
    monkeypatch.setattr(safeio, "_sleep", slept.append)

    def dropped():
        raise OSError(*DROPPED)

    with pytest.raises(OSError):
        safeio.retry_io(dropped, path="/x", what="read")
    assert slept == list(safeio.RETRY_DELAYS_S) and 1 <= sum(slept) <= 5  # a few tries, seconds in all


@pytest.mark.parametrize("op", ["replace", "fsync"])
def test_episode_write_survives_one_drop_byte_identical(tmp_path, fail, op):
    calm = EpisodeStorage(tmp_path / "calm" / "episodes").add_episode(*episode())
    calls = fail(op, 1, *DROPPED)
    path = EpisodeStorage(tmp_path / "drop" / "episodes").add_episode(*episode())
    assert calls[op] >= 2  # it really failed once and was tried again
    assert path.read_bytes() == calm.read_bytes()
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary left behind


def _write_config(path):
    get_config("smoke").save(path / "config.json")
    assert Config.load(path / "config.json") == get_config("smoke")


def _write_checkpoint(path):
    model = torch.nn.Linear(3, 2)
    save_checkpoint(model, None, 0, get_config("smoke"), path, episodes=1, metrics=[])
    assert load_checkpoint(path)["iteration"] == 0


def _write_gif(path):
    video.save_gif(np.zeros((3, 8, 8, 3), np.uint8), path / "clip.gif")
    assert (path / "clip.gif").read_bytes()[:3] == b"GIF"


@pytest.mark.parametrize("write", [_write_config, _write_checkpoint, _write_gif])
def test_every_writer_survives_one_drop(tmp_path, fail, write):
    calls = fail("replace", 1, *DROPPED)
    write(tmp_path)
    assert calls["replace"] >= 2


def test_lasting_drop_is_one_clear_error_naming_the_path(tmp_path, fail):
    store = EpisodeStorage(tmp_path / "episodes")
    fail("replace", 100, *DROPPED)
    with pytest.raises(OSError) as info:
        store.add_episode(*episode())
    message = str(info.value)
    assert len(message.splitlines()) == 1 and info.value.errno == errno.ENOTCONN
    assert str(store.path_for(1)) in message and "remount" in message and "full" not in message
    assert os.listdir(tmp_path / "episodes") == []


def test_full_disk_says_disk_full_at_once(tmp_path, fail):
    store = EpisodeStorage(tmp_path / "episodes")
    calls = fail("fsync", 100, errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match="disk full") as info:
        store.add_episode(*episode())
    assert calls["fsync"] == 1  # not retried: waiting frees no space
    assert str(store.path_for(1)) in str(info.value) and "Trash" in str(info.value)


@pytest.mark.parametrize("code, text", [(errno.EACCES, "Permission denied"), DROPPED])
def test_other_errors_do_not_blame_a_full_disk(tmp_path, fail, code, text):
    model = torch.nn.Linear(3, 2)
    fail("replace", 100, code, text)
    with pytest.raises(OSError) as info:
        save_checkpoint(model, None, 0, get_config("smoke"), tmp_path, episodes=1, metrics=[])
    message = str(info.value)
    assert "ckpt_000000.pt" in message and text in message
    assert "full" not in message.lower()


@pytest.mark.parametrize("code, text", [(errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied")])
def test_a_folder_turned_read_only_says_what_to_do(tmp_path, fail, code, text):
    store = EpisodeStorage(tmp_path / "episodes")
    calls = fail("replace", 100, code, text)
    with pytest.raises(OSError) as info:
        store.add_episode(*episode())
    message = str(info.value)
    assert calls["replace"] == 1  # not retried: waiting makes no folder writable
    assert len(message.splitlines()) == 1 and str(store.path_for(1)) in message and text in message
    assert "make it writable again" in message and "run again" in message and "full" not in message


def test_clean_temporaries_removes_only_stale_leftovers(tmp_path):
    names = [".ckpt_000001.pt.tmp-12-deadbeef", ".tmp_episode_000002_cafebabe.partial", ".config.json.tmp",
             ".metrics.jsonl.tmp-7-0123abcd"]
    keep = [".ipynb_checkpoints", "notes.tmp", "episode_000001.npz", ".hidden"]
    for name in names + keep:
        (tmp_path / name).write_text("x")
    fresh = tmp_path / ".ckpt_000009.pt.tmp-12-feedf00d"  # a live writer's, in another process
    fresh.write_text("x")
    old = time.time() - 2 * safeio.STALE_TEMP_AGE_S
    for name in names + keep:
        os.utime(tmp_path / name, (old, old))
    removed = safeio.clean_temporaries(tmp_path, safeio.STALE_TEMP_AGE_S)
    assert sorted(p.name for p in removed) == sorted(names)
    assert sorted(os.listdir(tmp_path)) == sorted(keep + [fresh.name])


def test_quarantine_moves_never_overwrites_and_warns(tmp_path):
    qdir = tmp_path / "quarantine"
    moved = []
    for content in (b"first", b"second"):
        bad = tmp_path / "ckpt_000003.pt"
        bad.write_bytes(content)
        with pytest.warns(safeio.QuarantineWarning, match="ckpt_000003.pt is damaged \\(bad hash\\)"):
            moved.append(safeio.quarantine(bad, qdir, "bad hash"))
        assert not bad.exists()
    assert [p.name for p in moved] == ["ckpt_000003.pt", "ckpt_000003.1.pt"]
    assert [p.read_bytes() for p in moved] == [b"first", b"second"]


def test_temporary_never_matches_a_final_name_and_is_cleaned_when_stale(tmp_path):
    final = tmp_path / "episode_000001.npz"
    tmp = safeio.temporary_name(final)
    assert tmp.parent == tmp_path and tmp.name.startswith(".") and not tmp.name.endswith(".npz")
    tmp.write_bytes(b"half a file")
    assert safeio.clean_temporaries(tmp_path, 3600) == []
    assert safeio.clean_temporaries(tmp_path, 0) == [tmp]


def test_checkpoint_survives_a_drop_while_torch_streams_it(tmp_path, monkeypatch):
    """torch.save reports a failed write as a RuntimeError without errno; it is still retried."""
    real_open, writes = open, []

    class DropsOnce:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            writes.append(len(data))
            if len(writes) == 3:  # mid-stream, on the first attempt only
                raise OSError(*DROPPED)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(safeio, "open", lambda *a, **k: DropsOnce(real_open(*a, **k)), raising=False)
    model = torch.nn.Linear(3, 2)
    save_checkpoint(model, None, 0, get_config("smoke"), tmp_path, episodes=1, metrics=[])
    assert torch.equal(load_checkpoint(tmp_path)["model"]["weight"], model.weight.detach())


@pytest.mark.parametrize("check", [safeio.exists, safeio.is_dir, safeio.is_file])
def test_a_dropped_mount_is_never_taken_for_a_missing_file(tmp_path, fail, check):
    # A check that answered "absent" during a drop would have the run collect again (or start over)
    # what is stored; os.path.exists does answer so.
    (tmp_path / "episode_000001.npz").write_bytes(b"x")
    assert check(tmp_path / "missing.npz") is False
    calls = fail("stat", 3, *DROPPED)
    assert check(tmp_path / "episode_000001.npz") is (check is not safeio.is_dir)  # retried past the drop
    assert calls["stat"] == 4
    fail("stat", 10**9, *DROPPED)
    with pytest.raises(OSError, match="remount Drive"):
        check(tmp_path / "episode_000001.npz")
