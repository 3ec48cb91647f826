"""`bench ops`: each aten op of a train step or a plan, by its own CPU time."""

import json

import pytest

from skip_reasons import DMC_EXTRA

from planet_colab.__main__ import UsageError
from planet_colab.bench.ops import main


@pytest.mark.parametrize("what, expected", [("train", "convolution_backward"), ("plan", "mm")])
def test_the_ops_of_a_step_or_plan_are_listed_by_their_cpu_time(capsys, what, expected):
    main(["--what", what, "--preset", "smoke", "--precision", "fp32", "--repeats", "1", "--top", "40",
          "--set", "batch_size=2", "seq_len=3", "candidates=20", "optim_iters=2", "top_k=4"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    ops = {row["op"]: row for row in result["by_op"]}
    assert expected in ops and ops[expected]["calls"] > 0
    times = [row["cpu_ms"] for row in result["by_op"]]
    assert times == sorted(times, reverse=True) and sum(times) <= result["ops_cpu_ms"] + 0.001 * len(times)
    assert result["cpu_ms"] > 0 and result["what"] == what


def test_a_bad_set_is_a_one_line_usage_error():
    with pytest.raises(UsageError, match="candidates expects"):
        main(["--set", "candidates=zero"])


def test_a_plan_is_measured_at_the_presets_own_action_size():
    pytest.importorskip("dm_control", reason=DMC_EXTRA)
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):  # walker_walk has six actions: a plan of one would understate its cost
        main(["--what", "plan", "--preset", "walker_walk", "--repeats", "1",
              "--set", "candidates=20", "optim_iters=2", "top_k=4"])
    assert json.loads(out.getvalue().strip().splitlines()[-1])["action_dim"] == 6
