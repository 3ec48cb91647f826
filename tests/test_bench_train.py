"""`bench train`'s matmul share: the FLOPs it counts for a train step, and the matmul it compares them with."""

import torch

from planet_colab.bench.train import matmul_tflops, step_flops
from planet_colab.config import get_config
from planet_colab.losses import make_optimizer
from planet_colab.models import WorldModel


def test_a_step_counts_the_flops_of_its_batch_and_the_matmul_is_timed():
    config = get_config("smoke")
    torch.manual_seed(0)
    model = WorldModel(1, config)
    optimizer = make_optimizer(model, config)

    def flops(batch: int) -> int:
        g = torch.Generator().manual_seed(0)
        obs = torch.rand(6, batch, 64, 64, 3, generator=g)
        return step_flops(model, optimizer, (obs, torch.rand(6, batch, 1), torch.rand(6, batch)), torch.device("cpu"),
                          config)

    one, two = flops(2), flops(4)
    assert one > 0 and 1.9 < two / one < 2.1  # conv and matmul work grows with the batch
    assert matmul_tflops("fp32", torch.device("cpu"), size=128, repeats=2) > 0


def test_the_share_is_also_given_per_cpu_second_which_waiting_for_a_core_cannot_lower(capsys):
    import json

    from planet_colab.bench.train import main

    main(["--preset", "smoke", "--batch", "2", "--seq", "3", "--steps", "2", "--rounds", "1", "--warmup", "1",
          "--threads", "1", "--precision", "fp32"])
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert "per CPU second" in out
    # One thread: CPU seconds never exceed wall seconds, so the per-CPU-second rate is at least the wall one.
    assert result["step_tflops_per_cpu_s"] >= result["step_tflops"] * 0.95
    assert result["step_share_of_matmul_per_cpu_s"] >= result["step_share_of_matmul"] * 0.95
