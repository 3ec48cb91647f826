"""`bench reward` reads a run without writing it, splits the reward head by the true reward, and replays
every evaluation's own environment seeds with zero actions."""

import json

import numpy as np
import pytest
import torch

from planet_colab.bench.reward import main, onsets


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from planet_colab.run import Run
    from planet_colab.train import train_planner

    root = tmp_path_factory.mktemp("reward")
    run = Run.open(root / "run", "smoke", changes={"total_iterations": 2})  # smoke evaluates after iteration 2
    train_planner(run, progress=False)
    return root


def test_a_run_is_measured_read_only_and_the_zero_policy_replays_the_evaluations(trained, tmp_path, capsys):
    from planet_colab.run import Run

    before = sorted((p.relative_to(trained), p.stat().st_mtime_ns) for p in trained.rglob("*"))
    figure = tmp_path / "frames.png"
    main(["--run-dir", str(trained / "run"), "--episodes", "4", "--quiet", "1", "--leads", "0", "1",
          "--zero-policy", "--figure", str(figure)])
    out = last_json(capsys)
    assert sorted((p.relative_to(trained), p.stat().st_mtime_ns) for p in trained.rglob("*")) == before
    assert figure.stat().st_size > 0

    head = out["head"]
    assert head["steps_above"] > 0 and head["steps_below"] > 0
    assert head["true_above"] > head["threshold"] >= head["true_below"]
    assert set(out["ahead_of_onsets"]) == {"0", "1"}

    rows = [row for row in Run.open(trained / "run", new_ok=False).read_metrics() if "eval_returns" in row]
    assert [r["iteration"] for r in out["zero_policy"]] == [row["iteration"] for row in rows] and rows
    assert out["zero_policy"][0]["agent"] == [round(x, 1) for x in rows[0]["eval_returns"]]


def test_the_zero_policy_plays_the_seeds_evaluate_plays(trained, capsys):
    """A planner that always answers zero, run through agent.evaluate, earns what the bench's zero policy earned."""
    from planet_colab.agent import evaluate
    from planet_colab.run import Run

    main(["--run-dir", str(trained / "run"), "--episodes", "4", "--zero-policy"])
    zero = last_json(capsys)["zero_policy"][0]
    run = Run.open(trained / "run", new_ok=False)
    parts = run.restore_agent(torch.device("cpu"))

    def zero_planner(model, state, generator):
        return torch.zeros(1, model.action_dim)

    ev = evaluate(parts.model, zero_planner, run.config, num_episodes=len(zero["zero"]), seed_key=zero["iteration"])
    assert [round(x, 1) for x in ev["returns"]] == zero["zero"]
    # ... and not what another evaluation's seeds would have given
    other = evaluate(parts.model, zero_planner, run.config, num_episodes=len(zero["zero"]),
                     seed_key=zero["iteration"] + 1)
    assert [round(x, 1) for x in other["returns"]] != zero["zero"]


def test_an_onset_needs_quiet_steps_before_it():
    reward = np.array([0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 2], dtype=np.float32)
    assert onsets(reward, 0.0, quiet=3) == [3, 10]
    assert onsets(reward, 0.0, quiet=1) == [3, 6, 10]
    assert onsets(reward, 1.0, quiet=3) == [10]
