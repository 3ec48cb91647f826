"""Every task preset trains and resumes from the command line, at tiny sizes but on its own task; a suite
task and HalfCheetah also run through notebooks 01 → 02 → 03, picked in 01's form as a user picks them.

The presets' own sizes take hours; here each keeps its task, action repeat and camera and shrinks the
rest, so a preset whose environment, action space or frames were wrong fails in seconds.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from skip_reasons import DMC_EXTRA, TEST_EXTRA

from planet_colab.__main__ import main as cli
from planet_colab.config import get_config, parse_override
from planet_colab.storage import EpisodeStorage, episode_number

# Each preset's task and its action dimension (dm_control's action_spec, gymnasium's action_space).
TASKS = {"cartpole_swingup": ("dmc:cartpole-swingup", 1), "reacher_easy": ("dmc:reacher-easy", 2),
         "cheetah_run": ("dmc:cheetah-run", 6), "finger_spin": ("dmc:finger-spin", 2),
         "cup_catch": ("dmc:ball_in_cup-catch", 2), "walker_walk": ("dmc:walker-walk", 6),
         "half_cheetah": ("HalfCheetah-v5", 6)}
EPISODE_LEN = 4  # agent steps per episode: max_episode_steps = EPISODE_LEN × the preset's action repeat
TINY = ["cnn_depth=4", "deter_dim=8", "stoch_dim=4", "hidden_dim=8", "batch_size=2", "seq_len=3",
        "train_steps=1", "horizon=2", "candidates=8", "optim_iters=1", "top_k=2", "seed_episodes=1",
        "checkpoint_every=1", "eval_every=1", "eval_episodes=1", "precision=fp32"]


@pytest.mark.parametrize("preset", list(TASKS))
def test_preset_trains_and_resumes_from_the_command_line(preset, tmp_path, capsys):
    config = get_config(preset)
    env_name, action_dim = TASKS[preset]
    assert config.env_name == env_name
    pytest.importorskip("dm_control" if config.env_name.startswith("dmc:") else "mujoco", reason=DMC_EXTRA)
    run_dir = tmp_path / preset
    argv = ["train", "--preset", preset, "--run-dir", str(run_dir), "--no-progress", "--set", *TINY,
            f"max_episode_steps={EPISODE_LEN * config.action_repeat}"]

    # Two iterations in one process: iteration 2 collects after iteration 1's evaluation made and
    # closed an env of its own (HalfCheetah then drew black frames). Then resume for a third.
    assert cli([*argv, "--iterations", "2"]) == 0, capsys.readouterr().err
    assert f"Starting a new run in {run_dir} ({preset} preset" in capsys.readouterr().out
    assert cli([*argv, "--iterations", "3"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"Resumed from checkpoint after iteration 2 of 3 ({preset} preset, 3 episodes stored" in out, out
    assert cli(["info", "--run-dir", str(run_dir)]) == 0
    assert f"{config.env_name}, {preset} preset, action repeat {config.action_repeat}" in capsys.readouterr().out

    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["env_name"] == config.env_name and stored["total_iterations"] == 3
    storage = EpisodeStorage(run_dir / "episodes")
    assert [episode_number(p) for p in storage.episode_paths] == [1, 2, 3, 4]  # 1 seed + 1 per iteration
    for path in storage.episode_paths:
        episode = storage.load_episode(path)
        assert episode["obs"].shape == (EPISODE_LEN, 64, 64, 3) and episode["obs"].dtype == np.uint8, path.name
        assert episode["obs"].std() > 5, f"{path.name}: blank frames"
        assert episode["action"].shape == (EPISODE_LEN, action_dim), path.name
        assert episode["action"].dtype == np.float32 and np.abs(episode["action"]).max() <= 1
        assert episode["reward"].shape == (EPISODE_LEN,) and np.isfinite(episode["reward"]).all()
        assert not episode["terminal"].any(), f"{path.name}: a time limit is a truncation, not a terminal"
        if config.env_name.startswith("dmc:"):  # the suite's rewards are in [0, 1] per env step, summed
            assert (episode["reward"] >= 0).all() and (episode["reward"] <= config.action_repeat).all()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2] and [r["episodes"] for r in rows] == [2, 3, 4]
    assert all(r["collect_length"] == EPISODE_LEN and r["train_steps"] == 1 for r in rows)


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("preset", ["cartpole_swingup", "half_cheetah"])
def test_preset_runs_through_the_notebooks(preset, tmp_path, monkeypatch):
    config = get_config(preset)
    pytest.importorskip("dm_control" if config.env_name.startswith("dmc:") else "mujoco", reason=DMC_EXTRA)
    nbclient, nbformat = pytest.importorskip("nbclient", reason=TEST_EXTRA), pytest.importorskip("nbformat", reason=TEST_EXTRA)
    # The notebooks keep a run's config.json: a tiny one written first stands in for the preset's hours.
    run_dir = tmp_path / preset
    run_dir.mkdir()
    # 8 agent steps per episode: notebook 03's open loop filters 5 frames, then imagines `horizon` (2).
    tiny = config.replace(**dict(map(parse_override, TINY)), total_iterations=2,
                          max_episode_steps=8 * config.action_repeat)
    tiny.save(run_dir / "config.json")
    monkeypatch.setenv("PLANET_COLAB_RUN_ROOT", str(tmp_path))
    monkeypatch.delenv("PLANET_COLAB_PRESET", raising=False)  # notebooks/conftest.py sets smoke for nbval
    monkeypatch.delenv("PLANET_COLAB_RUN_DIR", raising=False)

    def run(name: str, pick: str | None = None) -> str:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        if pick:  # what choosing the task in the Colab form does to the cell
            cell = next(c for c in notebook.cells if 'PRESET = "pendulum"' in c.source)
            cell.source = cell.source.replace('PRESET = "pendulum"', f'PRESET = "{pick}"')
        nbclient.NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
        return "".join(out.get("text", "") for c in notebook.cells if c.cell_type == "code" for out in c.outputs)

    out = run("01_setup_and_seed_episodes.ipynb", pick=preset)
    assert f"task '{preset}' (picked here" in out and f"run directory {run_dir}" in out, out
    assert "collected 1 new episode(s); 1 stored" in out, out
    out = run("02_train_planner.ipynb")
    assert f"task '{preset}' (picked in notebook 01)" in out and "2 of 2 iterations done (2 in this session)" in out, out
    out = run("03_evaluate_and_visualize.ipynb")
    assert "model after iteration 2 of 2, 3 episodes" in out, out
    assert EpisodeStorage(run_dir / "episodes").num_episodes == 3
    assert (run_dir / "videos" / "eval_000002.gif").stat().st_size > 0
