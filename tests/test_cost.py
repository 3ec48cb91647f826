"""The time estimate shown before a run starts agrees with what was measured."""

import re
from pathlib import Path

from planet_colab.colab import notebook_tasks
from planet_colab.config import get_config
from planet_colab.cost import (BF16_CPU, FP32_CPU, costs_for_this_cpu, depth_factor, describe_cost,
                               estimate_seconds, format_duration, render_seconds)


def test_pendulum_estimate_matches_the_published_run():
    # docs/results/pendulum.md: 95 iterations (100 episodes) took 6010 s on a 2-core CPU with bf16.
    total = estimate_seconds(get_config("pendulum", total_iterations=95), BF16_CPU)["total"]
    assert abs(total - 6010) / 6010 < 0.10


def test_a_cpu_without_bf16_is_estimated_from_its_own_measurements():
    # An fp32 run measured 3.3 s per train step and 0.9-1.2 s per action on one loaded thread of an
    # AVX2 CPU; the estimate assumes an idle thread, so it is lower than that but not the bf16 figure.
    pendulum = get_config("pendulum")
    train_step = estimate_seconds(pendulum.replace(total_iterations=1, train_steps=1), FP32_CPU)["train"]
    assert 1.5 < train_step < 3.3
    assert estimate_seconds(pendulum, FP32_CPU)["total"] > 4 * estimate_seconds(pendulum, BF16_CPU)["total"]
    assert costs_for_this_cpu("fp32") is FP32_CPU  # a run forced to fp32 pays fp32 on any CPU
    assert costs_for_this_cpu("bf16") is BF16_CPU
    assert "without bf16" in describe_cost(pendulum, FP32_CPU)


def test_estimate_grows_with_the_work_and_reads_as_hours():
    base = get_config("pendulum")
    assert estimate_seconds(base.replace(total_iterations=200))["total"] > 1.9 * estimate_seconds(base)["total"]
    assert estimate_seconds(base.replace(batch_size=32))["train"] == 2 * estimate_seconds(base)["train"]
    assert describe_cost(base, BF16_CPU).startswith("pendulum: 100 iterations, estimated 1.8 h on an idle 2-core CPU")
    assert "not measured" in describe_cost(base)  # an estimate says so


def test_mujoco_tasks_pay_for_rendering():
    plain = get_config("smoke")
    mujoco = plain.replace(env_name="dmc:cartpole-swingup")
    assert estimate_seconds(mujoco)["collect"] > estimate_seconds(plain)["collect"]


def test_durations_read_naturally():
    assert [format_duration(s) for s in (40, 720, 6400)] == ["40 s", "12 min", "1.8 h"]


def test_readme_table_shows_the_current_estimates():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = {task: (bf16, fp32) for task, bf16, fp32 in re.findall(r"\| `(\w+)` \| ([\d.]+ (?:h|min)) \| ([\d.]+ (?:h|min)) \|", readme)}
    expected = {task: tuple(format_duration(estimate_seconds(get_config(task), costs)["total"])
                            for costs in (BF16_CPU, FP32_CPU)) for task in notebook_tasks()}
    assert table == expected, "update the README's cost table"


def test_render_costs_are_the_measured_ones_per_kind_of_task():
    # bench env at 1 thread, tuned settings: cartpole_swingup (suite) 12.4 ms CPU per frame,
    # HalfCheetah-v5 16.2 ms; classic control is not charged.
    assert render_seconds("dmc:cartpole-swingup") == 0.0124
    assert render_seconds("HalfCheetah-v5") == 0.0162
    assert render_seconds("Pendulum-v1") == 0.0


def test_a_smaller_conv_depth_is_charged_what_it_was_measured_to_cost():
    # bench: a 16 × 25 bf16 train step on one thread took 0.24 CPU s at depth 16 against 0.43 s at 32.
    base = get_config("cartpole_swingup", cnn_depth=32)
    half = estimate_seconds(base.replace(cnn_depth=16))["train"] / estimate_seconds(base)["train"]
    assert abs(half - 0.24 / 0.43) < 0.05
    assert depth_factor(32) == 1.0 and depth_factor(8) < depth_factor(16) < depth_factor(32)
