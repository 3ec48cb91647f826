"""`evaluate` and `info` as a user meets them: readable output, video formats, one-line errors."""

import pytest
from skip_reasons import VIDEO_EXTRA

from planet_colab import video
from planet_colab.__main__ import main as cli


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert cli(["train", "--run-dir", str(run), "--preset", "smoke", "--iterations", "2",
                "--no-progress", "--set", "eval_every=1", "checkpoint_every=1"]) == 0
    return run


def test_info_is_a_summary_of_the_run(trained_run, capsys):
    assert cli(["info", "--run-dir", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert "Pendulum-v1, smoke preset" in out
    assert "4 stored (2 random seed + 2 collected)" in out
    assert "evaluation" in out and "after iteration 2" in out
    assert "s per iteration (train" in out
    assert "nothing set aside" in out
    assert "trainer" in out and "none now (no trainer holds the run)" in out


def test_info_has_one_layout_for_a_run_with_or_without_iterations(trained_run, tmp_path, capsys):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.json").write_text((trained_run / "config.json").read_text())
    labels = []
    for run in (trained_run, fresh):
        assert cli(["info", "--run-dir", str(run)]) == 0
        labels.append([line.split()[0] for line in capsys.readouterr().out.splitlines()])
    assert labels[0] == labels[1] == ["run", "task", "episodes", "quarantine", "progress", "last", "evaluation",
                                      "time", "trainer"]


def test_info_says_when_a_trainer_holds_the_run_now(trained_run, tmp_path, capsys):
    import shutil

    from planet_colab.run import Run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    with Run.open(run, new_ok=False).own():
        assert cli(["info", "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "a `train` now would be refused" in out and "this machine" in out


def test_info_and_evaluate_find_a_presets_run_without_run_dir(trained_run, monkeypatch, capsys):
    monkeypatch.setenv("PLANET_COLAB_RUN_DIR", str(trained_run))  # where --preset smoke's run lives here
    assert cli(["info", "--preset", "smoke"]) == 0
    assert f"run         {trained_run}" in capsys.readouterr().out
    assert cli(["evaluate", "--preset", "smoke", "--episodes", "1"]) == 0
    assert "After iteration 2:" in capsys.readouterr().out


def test_info_and_evaluate_without_a_run_say_how_to_name_one(capsys):
    for command in ("info", "evaluate"):
        assert _exit_code([command]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--preset NAME" in err and "--run-dir DIR" in err


def test_info_with_a_preset_that_is_not_the_runs_is_refused(trained_run, capsys):
    assert _exit_code(["info", "--preset", "pendulum", "--run-dir", str(trained_run)]) == 2
    assert "does not match" in capsys.readouterr().err


def test_evaluate_video_into_a_missing_folder_is_refused_before_playing(trained_run, tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setattr("planet_colab.run.build_agent_parts", lambda *a, **k: pytest.fail("played"))
    target = tmp_path / "no_such_folder" / "ep.gif"
    assert _exit_code(["evaluate", "--run-dir", str(trained_run), "--video", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err
    assert not target.parent.exists()


def test_evaluate_video_is_scaled_up_for_viewing(trained_run, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "ep.gif"
    assert cli(["evaluate", "--run-dir", str(trained_run), "--episodes", "1", "--video", str(out)]) == 0
    assert Image.open(out).size == (256, 256)


def test_info_names_the_damaged_files_set_aside(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "quarantine").mkdir()
    (run / "quarantine" / "episode_000003.npz").write_bytes(b"damaged")
    assert cli(["info", "--run-dir", str(run)]) == 0
    assert f"1 damaged file(s) set aside in {run / 'quarantine'}: episode_000003.npz" in capsys.readouterr().out


def _exit_code(argv):
    """What the shell sees: main()'s return value, or the code argparse exits with."""
    try:
        return cli(argv)
    except SystemExit as e:
        return e.code


def test_evaluate_episodes_must_be_positive_and_the_error_names_the_option(trained_run, capsys):
    assert _exit_code(["evaluate", "--run-dir", str(trained_run), "--episodes", "0"]) == 2
    err = capsys.readouterr().err
    assert "argument --episodes: must be a positive integer, got '0'" in err
    assert "num_episodes" not in err


def test_evaluate_with_another_planner_plays_with_it_and_leaves_the_run_alone(trained_run, capsys):
    import json

    config_before = (trained_run / "config.json").read_bytes()
    played = {}
    for name, extra in (("own", []), ("stronger", ["--set", "candidates=64", "optim_iters=4", "top_k=8",
                                                   "plan_warm_start=true"])):
        assert cli(["evaluate", "--run-dir", str(trained_run), "--episodes", "2", *extra]) == 0
        out = capsys.readouterr().out.splitlines()
        played[name] = json.loads(out[-1])
        played[name]["line"] = out[-2]
    assert "(CEM 16 × 2, top 4, horizon 3)" in played["own"]["line"]
    assert "(CEM 64 × 4, top 8, horizon 3, warm-started)" in played["stronger"]["line"]
    assert played["stronger"]["planner"]["candidates"] == 64 and played["stronger"]["planner"]["plan_warm_start"]
    # The same episode seeds: only the planner differs, so the play must too (an ignored --set would not).
    assert played["stronger"]["returns"] != played["own"]["returns"]
    assert (trained_run / "config.json").read_bytes() == config_before


@pytest.mark.parametrize("setting, words", [("batch_size=8", "batch_size would need training again"),
                                            ("top_k=99", "top_k (99) must not exceed candidates (16)"),
                                            ("candidates=many", "candidates expects int")])
def test_evaluate_set_refuses_what_it_cannot_change_in_one_line(trained_run, capsys, setting, words):
    assert _exit_code(["evaluate", "--run-dir", str(trained_run), "--set", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_evaluate_writes_an_mp4_when_asked_for_one(trained_run, tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg", reason=VIDEO_EXTRA)
    out = tmp_path / "ep.mp4"
    assert cli(["evaluate", "--run-dir", str(trained_run), "--episodes", "1", "--video", str(out)]) == 0
    assert out.read_bytes()[4:8] == b"ftyp"  # an MP4 container, not a GIF under that name
    assert "MP4" in capsys.readouterr().out


def test_mp4_without_a_writer_is_refused_before_any_episode_is_played(trained_run, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setattr(video.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr("planet_colab.train.build_agent_parts", lambda *a, **k: pytest.fail("played"))
    assert _exit_code(["evaluate", "--run-dir", str(trained_run), "--video", str(tmp_path / "ep.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install imageio-ffmpeg" in err and ".gif" in err
    assert not (tmp_path / "ep.mp4").exists()


def test_commands_on_a_directory_that_is_not_a_run_fail_in_one_line(tmp_path, capsys):
    for command in (["info"], ["evaluate"]):
        assert _exit_code([*command, "--run-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is not a run directory" in err
    # A file given as the run directory (a video, the README) is a user error, not a disk error.
    a_file = tmp_path / "ep.gif"
    a_file.write_bytes(b"GIF89a")
    for command in (["info"], ["evaluate"], ["train", "--preset", "smoke"]):
        assert _exit_code([*command, "--run-dir", str(a_file)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is a file, not a run directory" in err, err
    assert a_file.read_bytes() == b"GIF89a"


def _tree(root):
    """Every file under `root` with its bytes, and every folder: what a reader must leave as it found it."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_a_reader_moves_rewrites_and_deletes_nothing_and_skips_a_half_synced_checkpoint(trained_run, tmp_path,
                                                                                        capsys):
    """evaluate, info and notebook 03 on another runtime: the trainer's newest checkpoint not synced yet."""
    import os
    import shutil

    from planet_colab.run import Run
    from planet_colab.storage import DamagedEpisodeError

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    newest = run / "checkpoints" / "ckpt_000001.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # the upload has only begun
    (run / "config.json").unlink()  # recovered from a checkpoint, in memory only
    (run / "episodes" / "episode_000004.npz").write_bytes(b"not yet")
    for folder in ("checkpoints", "episodes"):  # a writer's temporaries, old enough to count as stale
        stale = run / folder / ".x.npz.tmp-1-0123abcd"
        stale.write_bytes(b"")
        os.utime(stale, (0, 0))
    before = _tree(run)

    with pytest.warns(UserWarning, match="ckpt_000001.pt.*left in place.*syncing"):
        agent = Run.open(run, new_ok=False).restore_agent()
    assert agent.checkpoint["iteration"] == 0
    storage = Run.open(run, new_ok=False).storage
    with pytest.warns(UserWarning, match="episode_000004.npz.*left in place"), pytest.raises(DamagedEpisodeError):
        storage.load_episode(storage.episode_paths[-1])
    with pytest.warns(UserWarning):
        assert cli(["info", "--run-dir", str(run)]) == 0
        assert cli(["evaluate", "--run-dir", str(run), "--episodes", "1"]) == 0
    assert "After iteration 1:" in capsys.readouterr().out
    assert _tree(run) == before


def test_info_on_a_run_without_episodes_creates_nothing(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / "episodes")
    before = _tree(run)
    assert cli(["info", "--run-dir", str(run)]) == 0
    assert "0 stored" in capsys.readouterr().out
    assert _tree(run) == before


def test_info_on_a_damaged_metrics_file_names_the_file_and_line(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 2, "lo\n')  # damaged by hand or by a sync tool
    assert cli(["info", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{run / 'metrics.jsonl'}, line 3," in err


def test_evaluate_replays_the_runs_own_evaluation_and_can_add_the_exploration_noise(trained_run, capsys):
    import json

    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    logged = rows[-1]["eval_returns"]  # the evaluation after iteration 2
    results = {}
    for extra in ([], ["--explore"]):
        assert cli(["evaluate", "--run-dir", str(trained_run), "--episodes", str(len(logged)),
                    "--seeds-of-iteration", "2", *extra]) == 0
        out = capsys.readouterr().out
        assert "on the seeds of the evaluation after iteration 2" in out and "mean |action|" in out
        results[bool(extra)] = json.loads(out.strip().splitlines()[-1])
    assert results[False]["returns"] == pytest.approx(logged, rel=1e-6)  # the same episodes, played again
    assert results[True]["explore"] and results[True]["returns"] != pytest.approx(logged, rel=1e-6)
    assert 0 < results[False]["mean_abs_action"] <= 1


def test_evaluate_says_each_episode_as_it_ends_in_a_log(trained_run, capsys):
    # A six-action task's episode takes minutes to plan: a log (not a terminal) gets a line per episode.
    import json

    assert cli(["evaluate", "--run-dir", str(trained_run), "--episodes", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    returns = json.loads(out[-1])["returns"]
    episodes = [line for line in out if line.startswith("episode ")]
    assert [line.split(":")[0] for line in episodes] == ["episode 1 of 2", "episode 2 of 2"]
    assert [f"return {r:.1f}" in line for line, r in zip(episodes, returns)] == [True, True]
