"""`bench versus`: this code against another copy of the package, one iteration each, in CPU seconds."""

from __future__ import annotations

import json
from pathlib import Path

from planet_colab.bench.__main__ import main as bench

REPO = Path(__file__).resolve().parent.parent


def test_versus_times_both_codes_alike_and_reports_the_ratio(capsys):
    # The baseline is this very checkout with a recipe that trains twice the steps: the work doubles,
    # so the ratio must show it (tiny smoke sizes: seconds; CPU time of fixed work is steady enough).
    bench(["versus", "--presets", "smoke", "--baseline-dir", str(REPO), "--baseline-set", "train_steps=30",
           "--set", "train_steps=3"])
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    smoke = result["presets"]["smoke"]
    (round1,) = smoke["rounds"]
    assert (round1["baseline"]["train_steps"], round1["current"]["train_steps"]) == (30, 3)
    assert round1["baseline"]["train_cpu_s"] > 3 * round1["current"]["train_cpu_s"]
    assert smoke["ratio"] > 1.2 and "CPU s per collected episode" in out
    assert str(REPO) not in json.dumps({k: v for k, v in result.items() if k != "baseline"})


def test_versus_names_an_unknown_preset_in_one_line(capsys):
    try:
        bench(["versus", "--presets", "nope"])
    except SystemExit as e:
        assert e.code == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
