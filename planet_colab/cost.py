"""What a run costs in wall-clock time, estimated before it starts from figures measured on a CPU.

The unit costs come from the published Pendulum run (docs/results/pendulum.md: AMD EPYC, 2 cores,
torch 2.13.0+cpu with 2 threads, the paper's model sizes, fp32): per iteration train 44.9 s for
100 steps of 16 × 25 sequences, collect 12.1 s for 100 agent steps of CEM 500 × 5 over 12 steps.
Training scales with sequences × length × steps, planning with candidates × refits × horizon per
agent step; MuJoCo tasks add one 64×64 render per agent step, in CPU time per frame measured with
`python -m planet_colab.bench env --preset P --threads 1` (OSMesa) on a 2-core AMD EPYC with AVX2 only,
at load average 6 (two learning runs on its cores; wall time there was 2-3× the CPU time, which
is taken as an idle machine's wall time): a suite task with the tuned render settings 12.4 ms
(cartpole_swingup), gymnasium's HalfCheetah with MuJoCo's own settings 89 ms. Colab's CPU runtime
has 2 cores too; a GPU runtime trains faster, by an amount not measured here. A busy
machine is slower: the cartpole_swingup run (docs/results) measured 12.5 s per 50 × 50 train step on
one thread with six other jobs on the two cores, against 2.8 s estimated here for an idle machine.
"""

from __future__ import annotations

from typing import Any

from planet_colab.dmc_install import uses_mujoco

TRAIN_S_PER_SEQUENCE_STEP = 44.9 / (100 * 16 * 25)
PLAN_S_PER_CANDIDATE_STEP = 12.1 / (100 * 500 * 5 * 12)
SUITE_RENDER_S = 0.0124  # a DeepMind Control Suite task (dmc:…), rendering.configure_offscreen's settings
GYM_MUJOCO_RENDER_S = 0.089  # a gymnasium MuJoCo env (HalfCheetah-v5), MuJoCo's own render settings
OVERHEAD_S_PER_ITERATION = 1.0  # data loader, metrics, checkpoints: most of a tiny model's iteration
STARTUP_S = 15.0  # imports, environment, seed episodes of a tiny run (smoke: 27 s on a loaded 2-core CPU)
MEASURED_ON = "an idle 2-core CPU"


def render_seconds(env_name: str) -> float:
    """Seconds one 64×64 frame costs on the measured CPU: MuJoCo tasks only (a classic-control frame is cheap)."""
    if not uses_mujoco(env_name):
        return 0.0
    return SUITE_RENDER_S if env_name.startswith("dmc:") else GYM_MUJOCO_RENDER_S


def estimate_seconds(config: Any) -> dict[str, float]:
    """Estimated seconds for the whole run on the measured CPU (paper-size model): train, collect, eval, total."""
    per_agent_step = (config.candidates * config.optim_iters * config.horizon * PLAN_S_PER_CANDIDATE_STEP
                      + render_seconds(config.env_name))
    episode = config.episode_len * per_agent_step
    iterations = config.total_iterations
    parts = {
        "train": iterations * config.train_steps * config.batch_size * config.seq_len
        * TRAIN_S_PER_SEQUENCE_STEP,
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


def describe_cost(config: Any) -> str:
    """One line: the preset's iterations and its estimated wall-clock time, saying it is an estimate."""
    parts = estimate_seconds(config)
    share = parts["train"] / parts["total"] if parts["total"] else 0.0
    return (f"{config.preset}: {config.total_iterations} iterations, estimated "
            f"{format_duration(parts['total'])} on {MEASURED_ON} ({share:.0%} of it training); "
            "a GPU runtime trains faster (not measured). It resumes where it stopped, so it may span sessions.")
