"""The time estimate shown before a run starts agrees with what was measured."""

import re
from pathlib import Path

from planet_colab.colab import notebook_tasks
from planet_colab.config import get_config
from planet_colab.cost import describe_cost, estimate_seconds, format_duration, render_seconds


def test_pendulum_estimate_matches_the_published_run():
    # docs/results/pendulum.md: 95 iterations (100 episodes) took 6010 s on a 2-core CPU.
    total = estimate_seconds(get_config("pendulum", total_iterations=95))["total"]
    assert abs(total - 6010) / 6010 < 0.10


def test_estimate_grows_with_the_work_and_reads_as_hours():
    base = get_config("pendulum")
    assert estimate_seconds(base.replace(total_iterations=200))["total"] > 1.9 * estimate_seconds(base)["total"]
    assert estimate_seconds(base.replace(batch_size=32))["train"] == 2 * estimate_seconds(base)["train"]
    assert describe_cost(base).startswith("pendulum: 100 iterations, estimated 1.8 h on an idle 2-core CPU")
    assert "not measured" in describe_cost(base)  # an estimate says so


def test_mujoco_tasks_pay_for_rendering():
    plain = get_config("smoke")
    mujoco = plain.replace(env_name="dmc:cartpole-swingup")
    assert estimate_seconds(mujoco)["collect"] > estimate_seconds(plain)["collect"]


def test_durations_read_naturally():
    assert [format_duration(s) for s in (40, 720, 6400)] == ["40 s", "12 min", "1.8 h"]


def test_readme_table_shows_the_current_estimates():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = dict(re.findall(r"\| `(\w+)` \| ([\d.]+ h) \|", readme))
    expected = {task: format_duration(estimate_seconds(get_config(task))["total"]) for task in notebook_tasks()}
    assert table == expected, "update the README's cost table"


def test_render_costs_are_the_measured_ones_per_kind_of_task():
    # bench env at 1 thread: cartpole_swingup (suite, tuned settings) 12.4 ms CPU per frame,
    # HalfCheetah-v5 (MuJoCo's own settings) 89 ms; classic control is not charged.
    assert render_seconds("dmc:cartpole-swingup") == 0.0124
    assert render_seconds("HalfCheetah-v5") == 0.089
    assert render_seconds("Pendulum-v1") == 0.0
