"""A Drive drop on any file call a training run makes: one shorter than the retries never ends the run (it
ends bit-identical to a calm one); one that lasts ends it with exit 3 and one line naming the file and
saying to remount Drive."""

import errno
import warnings

import pytest
import torch
from fault_launcher import DROP_CALLS, plant_drops
from run_checks import final_weights

from planet_colab import safeio
from planet_colab.__main__ import main

ITERATIONS = 3
# A checkpoint after every iteration and only two kept: the run also rotates (truncates, deletes) one.
ARGS = ["train", "--preset", "smoke", "--iterations", str(ITERATIONS), "--no-progress",
        "--set", "checkpoint_every=1", "keep_checkpoints=2", "eval_every=3"]
CALLS = sorted(DROP_CALLS)
# The run's only deletions free space (an old checkpoint) or hand the run on (the owner lease): they warn.
OPTIONAL = ("truncate", "unlink")


@pytest.fixture(scope="module")
def calm_run(tmp_path_factory) -> tuple:
    """A run without drops, and how many calls of each kind it made on its directory."""
    run_dir = tmp_path_factory.mktemp("calm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(safeio, "_sleep", lambda seconds: None)
        counts = plant_drops(run_dir, [], mp.setattr)
        assert main([*ARGS, "--run-dir", str(run_dir)]) == 0
    return run_dir, dict(counts)


def test_the_run_makes_every_kind_of_call_the_drops_are_planted_on(calm_run):
    _, counts = calm_run
    assert all(counts[call] for call in CALLS), counts  # else a test below would plant a drop on nothing


@pytest.mark.parametrize("call", CALLS)
def test_a_drop_shorter_than_the_retries_on_any_call_never_ends_the_run(tmp_path, monkeypatch, calm_run, call):
    calm_dir, calm_counts = calm_run
    code = errno.ENOTCONN if CALLS.index(call) % 2 else errno.EIO
    first = max(1, calm_counts[call] // 2)  # mid-run
    tries = len(safeio.RETRY_DELAYS_S) + 1
    counts = plant_drops(tmp_path, [(call, first, tries - 1, code)], monkeypatch.setattr)
    assert main([*ARGS, "--run-dir", str(tmp_path)]) == 0
    monkeypatch.undo()
    assert counts[call] >= first + tries - 1, counts  # the drop happened, and was outlasted
    mine, calm = final_weights(tmp_path, ITERATIONS), final_weights(calm_dir, ITERATIONS)
    assert all(torch.equal(mine[k], calm[k]) for k in calm)


@pytest.mark.parametrize("call", [c for c in CALLS if c not in OPTIONAL])
def test_a_drop_that_outlasts_the_retries_exits_3_with_one_line_saying_to_remount(tmp_path, monkeypatch, capsys,
                                                                                  calm_run, call):
    _, calm_counts = calm_run
    code = errno.EIO if CALLS.index(call) % 2 else errno.ENOTCONN
    first = max(1, calm_counts[call] // 2)
    plant_drops(tmp_path, [(call, first, 10**9, code)], monkeypatch.setattr)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert main([*ARGS, "--run-dir", str(tmp_path)]) == 3
    monkeypatch.undo()
    # The owner lease the drop leaves behind needs no line of its own (the next trainer takes it over).
    assert not [w for w in warned if "owner lease" in str(w.message)], [str(w.message) for w in warned]
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: Could not "), err
    assert str(tmp_path) in err and "remount Drive" in err and "tried 4 times" in err, err


@pytest.mark.parametrize("call", OPTIONAL)
def test_a_lasting_drop_while_deleting_a_rotated_out_checkpoint_leaves_it_and_says_so(tmp_path, monkeypatch, call):
    plant_drops(tmp_path, [(call, 1, 10**9, errno.ENOTCONN)], monkeypatch.setattr)
    with pytest.warns(UserWarning, match="Could not delete old checkpoint .*ckpt_000000.pt.*remount Drive"):
        assert main([*ARGS, "--run-dir", str(tmp_path)]) == 0
    monkeypatch.undo()
    assert (tmp_path / "checkpoints" / "ckpt_000000.pt").exists()  # tried again at the next rotation
