"""What a run costs in wall-clock time, estimated before it starts from figures measured on two kinds of CPU.

Training and planning cost several times more on a CPU without native bf16, so the unit costs come
in two sets, and an estimate uses the one this machine's CPU (and the config's precision) selects:

- **bf16** (AVX512-BF16 or AMX; `precision=auto` trains in bf16): the published Pendulum run
  (docs/results/pendulum.md: AMD EPYC, 2 cores, torch 2.13.0+cpu with 2 threads): per iteration
  train 44.9 s for 100 steps of 16 × 25 sequences, collect 12.1 s for 100 agent steps of CEM 500 × 5
  over 12 steps.
- **fp32** (AVX2 only, e.g. a 2-core AMD EPYC without AVX512): process CPU time of one thread,
  `python -m planet_colab.bench train --threads 1 --preset cartpole_swingup` 2.12 s per 16 × 25 step and
  `python -m planet_colab.bench plan --threads 1` 651 ms per action of the pendulum preset's CEM, both at
  load ~3 (two learning runs on the cores). One thread on an idle core takes about this long; two
  threads are faster by a factor not measured. The learning runs beside them (one thread each, load
  ~3) took 3.3 s per step and 0.9-1.2 s per action in wall time.

Training scales with sequences × length × steps, and with the conv depth as `depth_factor` says (the
units above are depth 32; depth 16 measured 0.24 against 0.43 CPU s per 16 × 25 bf16 step, 1 thread, on
an AMX-BF16 Xeon: docs/results/cost.md); planning with candidates × refits × horizon per
agent step; MuJoCo tasks add one 64×64 render per agent step, in CPU time per frame measured with
`python -m planet_colab.bench env --preset P --threads 1` (OSMesa) on the AVX2 box with the tuned render
settings (rendering.configure_offscreen): a suite task 12.4 ms at load 6 (cartpole_swingup), gymnasium's
HalfCheetah 16.2 ms at load 3.6 (89 ms with MuJoCo's own 4096² shadow map, before it was tuned too). A GPU
runtime trains faster, by an amount not measured here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planet_colab.dmc_install import uses_mujoco
from planet_colab.words import plural


@dataclass(frozen=True)
class CpuCosts:
    """Unit costs measured on one kind of CPU."""

    machine: str  # how the estimate names where it holds
    train_s_per_sequence_step: float
    plan_s_per_candidate_step: float


BF16_CPU = CpuCosts("an idle 2-core CPU with bf16 (2 threads)", 44.9 / (100 * 16 * 25), 12.1 / (100 * 500 * 5 * 12))
FP32_CPU = CpuCosts("one thread of an idle CPU without bf16 (fp32)", 2.12 / (16 * 25), 0.651 / (500 * 5 * 12))
SUITE_RENDER_S = 0.0124  # a DeepMind Control Suite task (dmc:…), rendering.configure_offscreen's settings
GYM_MUJOCO_RENDER_S = 0.0162  # a gymnasium MuJoCo env (HalfCheetah-v5), the same tuned settings
OVERHEAD_S_PER_ITERATION = 1.0  # data loader, metrics, checkpoints: most of a tiny model's iteration
STARTUP_S = 15.0  # imports, environment, seed episodes of a tiny run (smoke: 27 s on a loaded 2-core CPU)


def costs_for_this_cpu(precision: str = "auto") -> CpuCosts:
    """The unit costs for training at `precision` on this machine's CPU: bf16 where it is native, else fp32."""
    from planet_colab.precision import resolve_precision  # imports torch: only when an estimate is made

    return BF16_CPU if resolve_precision(precision, "cpu") == "bf16" else FP32_CPU


def render_seconds(env_name: str) -> float:
    """Seconds one 64×64 frame costs on the measured CPU: MuJoCo tasks only (a classic-control frame is cheap)."""
    if not uses_mujoco(env_name):
        return 0.0
    return SUITE_RENDER_S if env_name.startswith("dmc:") else GYM_MUJOCO_RENDER_S


def depth_factor(cnn_depth: int) -> float:
    """A train step's cost at conv depth `cnn_depth` relative to depth 32: the convolutions (~80% of a
    depth-32 step) shrink a little faster than linearly with depth, the RSSM and the rest (~20%) do not."""
    return 0.2 + 0.8 * (cnn_depth / 32) ** 1.2


def estimate_seconds(config: Any, costs: CpuCosts | None = None) -> dict[str, float]:
    """Estimated seconds for the whole run on a CPU of `costs` (default: this one's): train, collect, eval, total."""
    costs = costs or costs_for_this_cpu(config.precision)
    per_agent_step = (config.candidates * config.optim_iters * config.horizon * costs.plan_s_per_candidate_step
                      + render_seconds(config.env_name))
    episode = config.episode_len * per_agent_step
    iterations = config.total_iterations
    parts = {
        "train": iterations * config.train_steps * config.batch_size * config.seq_len
        * costs.train_s_per_sequence_step * depth_factor(config.cnn_depth),
        "collect": iterations * config.collect_episodes * episode,
        "eval": -(-iterations // config.eval_every) * config.eval_episodes * episode,  # and the last one
    }
    parts["total"] = sum(parts.values()) + iterations * OVERHEAD_S_PER_ITERATION + STARTUP_S
    return parts


def format_duration(seconds: float) -> str:
    """Seconds as a person reads them: '40 s', '12 min', '1.8 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe_cost(config: Any, costs: CpuCosts | None = None) -> str:
    """One line: the preset's iterations and estimated wall-clock time on a CPU like this one, said to be an estimate."""
    costs = costs or costs_for_this_cpu(config.precision)
    parts = estimate_seconds(config, costs)
    share = parts["train"] / parts["total"] if parts["total"] else 0.0
    return (f"{config.preset}: {plural(config.total_iterations, 'iteration')}, estimated "
            f"{format_duration(parts['total'])} on {costs.machine} ({share:.0%} of it training); "
            "a GPU runtime trains faster (not measured). It resumes where it stopped, so it may span sessions.")
