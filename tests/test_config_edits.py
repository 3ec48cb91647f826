"""A hand-edited config.json cannot change what a run is: refused as `--set` refuses the same change."""

from __future__ import annotations

import json

import pytest

from planet_colab.__main__ import main as cli

TRAIN = ["train", "--preset", "smoke", "--iterations", "2", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("edits") / "run"
    assert cli([*TRAIN, "--run-dir", str(run)]) == 0
    return run


def _copy_with(trained, tmp_path, **edits):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    config = json.loads((run / "config.json").read_text())
    config.update(edits)
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.mark.parametrize("field, value", [("seed", 1), ("cnn_depth", 8), ("seed_episodes", 3)])
def test_an_edited_fixed_field_is_refused_like_set(trained, tmp_path, capsys, field, value):
    import shutil

    asked = tmp_path / "asked"
    shutil.copytree(trained, asked)
    assert cli(["train", "--run-dir", str(asked), "--iterations", "3", "--no-progress", "--set",
                f"{field}={value}"]) == 2
    by_set = capsys.readouterr().err.strip()

    run = _copy_with(trained, tmp_path, **{field: value})
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    assert cli(["train", "--run-dir", str(run), "--iterations", "3", "--no-progress"]) == 2
    by_edit = capsys.readouterr().err.strip()
    assert len(by_edit.splitlines()) == 1
    old = json.loads((trained / "config.json").read_text())[field]
    assert by_edit == by_set.replace(str(asked), str(run)).replace(
        f"{field}: run has {old!r}, you asked for", f"{field}: run has {old!r}, its config.json was edited to")
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before  # nothing trained


def test_a_total_edited_below_the_checkpoints_is_refused_like_iterations(trained, tmp_path, capsys):
    run = _copy_with(trained, tmp_path, total_iterations=1)
    assert cli(["train", "--run-dir", str(run), "--no-progress"]) == 2
    assert "total_iterations (--iterations) 1 is below the 2 iterations" in capsys.readouterr().err


def test_an_edited_field_a_run_may_change_is_used(trained, tmp_path, capsys):
    run = _copy_with(trained, tmp_path, learning_rate=5e-4)
    assert cli(["train", "--run-dir", str(run), "--iterations", "3", "--no-progress"]) == 0
    assert "Resumed from checkpoint after iteration 2 of 3" in capsys.readouterr().out
