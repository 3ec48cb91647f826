"""Checkpoints: round trip, safe loading, damage → fallback + quarantine, rotation, never a silent restart."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from planet_colab.checkpoint import (INDEX_NAME, latest_checkpoint_info, load_checkpoint, sanitize,
                                     save_checkpoint)
from planet_colab.config import get_config


def _model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).pow(2).sum().backward()
    opt.step()  # so Adam has moment buffers and a step count to restore
    return model, opt


def _save(run_dir, iteration, keep=3, **kw):
    model, opt = _model_and_optimizer(seed=iteration)
    config = get_config("smoke", keep_checkpoints=keep)
    kw.setdefault("metrics", [{"iteration": i, "loss": 1.0 / (i + 1)} for i in range(iteration + 1)])
    kw.setdefault("episodes", 2 + iteration)
    return save_checkpoint(model, opt, iteration, config, run_dir, **kw), model, opt


def _ckpt_names(run_dir):
    return sorted(p.name for p in (Path(run_dir) / "checkpoints").glob("ckpt_*.pt"))


def test_round_trip_restores_model_optimizer_and_progress(tmp_path):
    rng_state = torch.get_rng_state()
    path, model, opt = _save(tmp_path, 19, extra={"torch_rng": rng_state})
    assert path == tmp_path / "checkpoints" / "ckpt_000019.pt"

    fresh_model, fresh_opt = _model_and_optimizer(seed=123)
    payload = load_checkpoint(tmp_path, fresh_model, fresh_opt)

    for a, b in zip(model.state_dict().values(), fresh_model.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = opt.state_dict(), fresh_opt.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for k in sa["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][k][name], sb["state"][k][name])
    assert payload["iteration"] == 19 and payload["start_iteration"] == 20
    assert payload["episodes"] == 21
    assert payload["metrics"][-1] == {"iteration": 19, "loss": 1.0 / 20}
    assert torch.equal(payload["extra"]["torch_rng"], rng_state)
    assert payload["config"]["preset"] == "smoke"


def test_saved_file_loads_with_plain_weights_only_torch_load(tmp_path):
    path, model, _ = _save(tmp_path, 0)
    payload = torch.load(path, weights_only=True, map_location="cpu")
    assert torch.equal(payload["model"]["weight"], model.weight)


def test_numpy_values_and_paths_are_sanitized(tmp_path):
    np_state = np.random.RandomState(0).get_state()  # legacy tuple with a uint32 array inside
    extra = {"np_rng": np_state, "where": tmp_path / "x", "arr": np.arange(6.0).reshape(2, 3)}
    metrics = [{"return": np.float32(1.5), "steps": np.int64(7), "ok": np.bool_(True)}]
    path, _, _ = _save(tmp_path, 0, metrics=metrics, extra=extra)

    payload = torch.load(path, weights_only=True)  # would fail if anything were left unsanitized
    m = payload["metrics"][0]
    assert m == {"return": 1.5, "steps": 7, "ok": True}
    assert [type(m[k]) for k in ("return", "steps", "ok")] == [float, int, bool]
    assert payload["extra"]["where"] == str(tmp_path / "x")
    assert torch.equal(payload["extra"]["arr"], torch.arange(6.0, dtype=torch.float64).reshape(2, 3))
    restored = payload["extra"]["np_rng"]
    assert restored[0] == "MT19937" and np.array_equal(restored[1].numpy(), np_state[1])


def test_unstorable_value_raises_type_error_naming_the_key(tmp_path):
    with pytest.raises(TypeError, match=r"extra\['gen'\]"):
        _save(tmp_path, 0, extra={"gen": np.random.default_rng(0)})
    with pytest.raises(TypeError, match="metrics"):
        sanitize([{"a": object()}], "metrics")
    assert not _ckpt_names(tmp_path)  # nothing half-written


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_newest_falls_back_to_previous_and_is_quarantined(tmp_path, damage):
    _save(tmp_path, 9)
    newest, _, _ = _save(tmp_path, 19)
    data = bytearray(newest.read_bytes())
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    else:
        mid = len(data) // 2
        data[mid:mid + 8] = bytes(b ^ 0xFF for b in data[mid:mid + 8])
        newest.write_bytes(bytes(data))

    with pytest.warns(UserWarning, match="ckpt_000019.pt is damaged"):
        payload = load_checkpoint(tmp_path)
    assert payload["iteration"] == 9 and payload["start_iteration"] == 10
    assert not newest.exists()
    assert (tmp_path / "quarantine" / "ckpt_000019.pt").exists()
    index = json.loads((tmp_path / "checkpoints" / INDEX_NAME).read_text())
    assert index["file"] == "ckpt_000009.pt" and "ckpt_000019.pt" not in index["checkpoints"]


def test_read_only_skips_a_damaged_newest_and_moves_rewrites_and_deletes_nothing(tmp_path):
    _save(tmp_path, 9)
    newest, _, _ = _save(tmp_path, 19)
    newest.write_bytes(newest.read_bytes()[:100])  # still syncing from the trainer's machine
    leftover = tmp_path / "checkpoints" / ".ckpt_000029.pt.tmp-999-deadbeef"
    leftover.write_bytes(b"")
    os.utime(leftover, (0, 0))  # stale: the owner would delete it
    files = {p: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}
    with pytest.warns(UserWarning, match="ckpt_000019.pt is damaged.*using the older ckpt_000009.pt.*left in place"):
        assert load_checkpoint(tmp_path, read_only=True)["iteration"] == 9
    (tmp_path / "checkpoints" / INDEX_NAME).write_text("{half")
    files[tmp_path / "checkpoints" / INDEX_NAME] = b"{half"
    with pytest.warns(UserWarning, match="latest.json is damaged") as caught:
        assert load_checkpoint(tmp_path, read_only=True)["iteration"] == 9
    # Without the index, torch itself finds the damage; its paragraph of advice is cut to its first sentence.
    (skipped,) = [str(w.message) for w in caught if "ckpt_000019.pt is damaged" in str(w.message)]
    why = skipped.split("(cannot be loaded: ", 1)[1].split("; using the older ckpt_000009.pt)", 1)[0]
    assert why.startswith("RuntimeError: ") and len(why) < 120
    assert {p: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()} == files
    assert not (tmp_path / "quarantine").exists()


def test_leftover_temporary_from_killed_save_is_ignored_and_cleaned(tmp_path):
    _save(tmp_path, 9)
    leftover = tmp_path / "checkpoints" / ".ckpt_000019.pt.tmp-999-deadbeef"
    leftover.write_bytes(b"half a checkpoint")
    assert load_checkpoint(tmp_path)["iteration"] == 9
    _save(tmp_path, 19)
    assert not leftover.exists()
    assert _ckpt_names(tmp_path) == ["ckpt_000009.pt", "ckpt_000019.pt"]


def test_rotation_keeps_last_k_and_removes_older(tmp_path):
    for it in range(0, 50, 10):
        _save(tmp_path, it, keep=2)
    assert _ckpt_names(tmp_path) == ["ckpt_000030.pt", "ckpt_000040.pt"]
    index = json.loads((tmp_path / "checkpoints" / INDEX_NAME).read_text())
    assert sorted(index["checkpoints"]) == ["ckpt_000030.pt", "ckpt_000040.pt"]
    assert index["file"] == "ckpt_000040.pt" and index["iteration"] == 40


def test_all_checkpoints_damaged_raises_instead_of_starting_over(tmp_path):
    for it in (9, 19):
        path, _, _ = _save(tmp_path, it)
        path.write_bytes(b"garbage")
    for _ in range(2):  # and keeps refusing: nothing was moved away
        with pytest.raises(RuntimeError, match="(?s)ckpt_000019.pt.*ckpt_000009.pt.*Refusing to start over"):
            load_checkpoint(tmp_path)
    assert _ckpt_names(tmp_path) == ["ckpt_000009.pt", "ckpt_000019.pt"]


def test_empty_run_dir_gives_none(tmp_path):
    assert load_checkpoint(tmp_path) is None
    assert latest_checkpoint_info(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    assert load_checkpoint(tmp_path) is None


def test_unindexed_checkpoint_loads_with_a_warning(tmp_path):
    _save(tmp_path, 9)
    (tmp_path / "checkpoints" / INDEX_NAME).unlink()  # as if killed between the rename and the index
    with pytest.warns(UserWarning, match="not listed"):
        assert load_checkpoint(tmp_path)["iteration"] == 9


def test_checkpoint_for_another_model_gives_clear_error(tmp_path):
    _save(tmp_path, 0)
    with pytest.raises(RuntimeError, match="does not fit this model"):
        load_checkpoint(tmp_path, nn.Linear(5, 3))


def test_info_describes_newest_without_loading(tmp_path):
    _save(tmp_path, 9)
    path, _, _ = _save(tmp_path, 19)
    info = latest_checkpoint_info(tmp_path)
    assert info["file"] == str(path) and info["iteration"] == 19 and info["size"] == path.stat().st_size
    assert info["num_checkpoints"] == 2 and len(info["sha256"]) == 64 and info["mtime"] > 0


def test_bad_iteration_is_rejected(tmp_path):
    model, opt = _model_and_optimizer()
    with pytest.raises(ValueError, match="iteration"):
        save_checkpoint(model, opt, -1, get_config("smoke"), tmp_path, episodes=0, metrics=[])


def test_kill_during_checkpoint_write_loses_nothing(tmp_path, monkeypatch):
    _save(tmp_path, 9)
    index_before = (tmp_path / "checkpoints" / INDEX_NAME).read_text()

    def killed_midway(obj, f):
        f.write(b"PK\x03\x04 partial zip")
        raise KeyboardInterrupt  # what a runtime interrupt looks like from inside the save

    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 19)
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt_000009.pt", INDEX_NAME]
    assert (tmp_path / "checkpoints" / INDEX_NAME).read_text() == index_before
    assert load_checkpoint(tmp_path)["iteration"] == 9
