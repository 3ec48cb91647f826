"""`bench precision`: the controlled A/B that decides which parts of the model may run in bf16."""

import json

import pytest

from planet_colab.bench import precision as bench
from planet_colab.precision import FP32_PARTS, MODEL_PARTS


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from planet_colab.run import Run
    from planet_colab.train import train_planner

    root = tmp_path_factory.mktemp("precision") / "run"
    run = Run.open(root, "smoke", changes={"total_iterations": 2, "checkpoint_every": 1, "eval_every": 2})
    train_planner(run, progress=False)
    return root


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_variants_name_a_precision_and_the_parts_kept_in_fp32():
    assert bench.parse_variant("bf16") == ("bf16", FP32_PARTS)
    assert bench.parse_variant("bf16-") == ("bf16", frozenset())
    assert bench.parse_variant("fp16+encoder") == ("fp16", FP32_PARTS | {"encoder"})
    assert bench.parse_variant("bf16+all") == ("bf16", frozenset(MODEL_PARTS))
    for bad, why in (("fp8", "precision"), ("bf16+gru", "unknown part"), ("bf16-+reward", "takes no")):
        with pytest.raises(ValueError, match=why):
            bench.parse_variant(bad)


def test_every_part_in_fp32_trains_exactly_as_fp32_and_a_variant_repeats_itself(smoke_run, capsys):
    # bf16 autocast with every part switched back to fp32 must leave nothing in bf16: the same
    # losses to the bit as fp32. A layer added outside the parts would show up here.
    bench.main(["--run-dir", str(smoke_run), "--variants", "fp32,bf16+all,bf16-,fp32", "--steps", "4",
                "--report-every", "2", "--held-out", "1"])
    results = last_json(capsys)["results"]
    assert set(results) == {"fp32", "bf16+all", "bf16-"}
    assert results["bf16+all"]["windows"] == results["fp32"]["windows"]
    assert results["bf16-"]["windows"] != results["fp32"]["windows"]  # bf16 did run somewhere
    assert len(results["fp32"]["open_loop_reward_abs_error_by_step"]) == 3  # the smoke horizon


def test_plans_are_scored_against_fp32_planning_from_the_same_beliefs(smoke_run, capsys):
    bench.main(["--run-dir", str(smoke_run), "--from-checkpoint", "--plans", "3"])
    results = last_json(capsys)["results"]
    assert results["fp32"]["first_action_gap_to_fp32"] == 0.0
    assert {"fp32 (other seed)", "bf16", "fp32 paper CEM 1000x10"} <= set(results)
    with pytest.raises(ValueError, match="--from-checkpoint"):
        bench.main(["--run-dir", str(smoke_run), "--plans", "3"])


def test_runs_are_compared_side_by_side(smoke_run, tmp_path, capsys):
    out = tmp_path / "curves.png"
    bench.main(["--compare-runs", str(smoke_run), str(smoke_run), "--out", str(out)])
    runs = last_json(capsys)["runs"]
    assert out.stat().st_size > 0
    rows = next(iter(runs.values()))
    assert [r["iteration"] for r in rows] == [0, 1] and "eval_mean" in rows[-1]
