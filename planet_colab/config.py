"""One place for every hyperparameter: the `Config` dataclass, named presets, JSON round-trip.

Defaults are the PlaNet paper's (Hafner et al., 2019) with the seed's Colab-sized training loop
(docs/design.md); presets shrink them. Nothing else in the package hard-codes a hyperparameter.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, fields
from typing import Any, Sequence

from planet_colab.safeio import read_text, write_atomic

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Fields that change the model's parameters or what they compute, the stored data's shapes, or which
# stored episode belongs to which iteration: a run directory started with one value cannot be resumed
# with another.
SHAPE_FIELDS = (
    "env_name", "action_repeat", "max_episode_steps", "image_size", "cnn_depth", "encoder_activation",
    "deter_dim", "stoch_dim", "hidden_dim", "seed_episodes", "collect_episodes",
)

# The conv encoder's nonlinearity (models.WorldModel): PlaNet's ReLU, or ELU, which cannot go silent.
ENCODER_ACTIVATIONS = ("relu", "elu")

# Fields that only say how a trained model plans: `evaluate --set` may change them for one evaluation
# (a stronger planner on the same model) without touching the run.
PLANNER_FIELDS = ("horizon", "candidates", "optim_iters", "top_k", "plan_warm_start", "plan_warm_std")


@dataclass
class Config:
    """Every hyperparameter of a run; each group's comment names the module it acts in (docs/design.md §1)."""

    preset: str = "pendulum"
    seed: int = 0

    # Environment (env.py)
    env_name: str = "Pendulum-v1"
    action_repeat: int = 2
    max_episode_steps: int = 200  # environment steps (before action repeat); Pendulum's own limit
    image_size: int = 64

    # World model (models.py)
    cnn_depth: int = 32  # encoder channels 32-64-128-256 -> embedding 1024
    # Missing from a config.json written before the field existed, which means the ReLU those runs used.
    encoder_activation: str = "relu"
    deter_dim: int = 200
    stoch_dim: int = 30
    hidden_dim: int = 200
    min_std: float = 0.1
    bit_depth: int = 5

    # Training (losses.py); the seed's Colab sizes
    batch_size: int = 16
    seq_len: int = 25
    train_steps: int = 50  # gradient steps per iteration; virtual_len = batch_size * train_steps
    learning_rate: float = 1e-3
    adam_eps: float = 1e-4
    grad_clip_norm: float = 1000.0
    free_nats: float = 3.0
    kl_balance: float = 0.5  # share of the KL gradient that trains the prior; 0.5 = plain KL (PlaNet)
    precision: str = "auto"

    # CEM planner (planner.py)
    horizon: int = 12
    candidates: int = 1000
    optim_iters: int = 10
    top_k: int = 100
    expl_noise: float = 0.3
    # Off (the paper's): every step's search starts from N(0, 1). On: from the previous step's plan
    # shifted by one step, with std plan_warm_std (planner.warm_start), reset at each episode start.
    plan_warm_start: bool = False
    plan_warm_std: float = 0.5

    # The online loop (train.py)
    seed_episodes: int = 5
    total_iterations: int = 100
    collect_episodes: int = 1
    checkpoint_every: int = 10
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 3
    eval_every: int = 10
    eval_episodes: int = 10

    @property
    def virtual_len(self) -> int:
        """Items per DataLoader epoch, so that it yields exactly `train_steps` full batches (docs/design.md §6)."""
        return self.batch_size * self.train_steps

    @property
    def episode_len(self) -> int:
        """Agent steps per stored episode (environment steps divided by the action repeat)."""
        return -(-self.max_episode_steps // self.action_repeat)

    @property
    def embed_dim(self) -> int:
        """Size of the conv encoder's output: 8·depth channels on a 2×2 grid for 64×64 input."""
        return 32 * self.cnn_depth

    def validate(self) -> "Config":
        """Raise ValueError naming every inconsistent field; return self when all is well."""
        problems = []

        def need(ok: bool, msg: str) -> None:
            if not ok:
                problems.append(msg)

        # A mistyped value (e.g. "2" in a hand-edited config.json) must be reported, not raise TypeError.
        def number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        def integer(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for name in ("action_repeat", "max_episode_steps", "cnn_depth", "deter_dim", "stoch_dim",
                     "hidden_dim", "batch_size", "seq_len", "train_steps", "horizon", "candidates",
                     "optim_iters", "top_k", "total_iterations", "collect_episodes",
                     "checkpoint_every", "keep_checkpoints", "eval_every", "eval_episodes"):
            value = getattr(self, name)
            need(integer(value) and value > 0, f"{name} must be a positive integer, got {value!r}")
        need(integer(self.seed_episodes) and self.seed_episodes >= 1,
             f"seed_episodes must be at least 1 (training needs data), got {self.seed_episodes!r}")
        need(integer(self.seed) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        need(self.image_size == 64, f"image_size must be 64 (the conv encoder's input), got {self.image_size!r}")
        need(integer(self.bit_depth) and 1 <= self.bit_depth <= 8,
             f"bit_depth must be an integer in 1..8, got {self.bit_depth!r}")
        need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        need(self.encoder_activation in ENCODER_ACTIVATIONS,
             f"encoder_activation must be one of {ENCODER_ACTIVATIONS}, got {self.encoder_activation!r}")
        for name in ("learning_rate", "adam_eps", "grad_clip_norm", "min_std", "checkpoint_minutes"):
            value = getattr(self, name)
            need(number(value) and value > 0, f"{name} must be > 0, got {value!r}")
        need(number(self.free_nats) and self.free_nats >= 0, f"free_nats must be >= 0, got {self.free_nats!r}")
        need(number(self.kl_balance) and 0 < self.kl_balance < 1,
             f"kl_balance must be in (0, 1) (0.5 = plain KL), got {self.kl_balance!r}")
        need(number(self.expl_noise) and self.expl_noise >= 0, f"expl_noise must be >= 0, got {self.expl_noise!r}")
        need(isinstance(self.plan_warm_start, bool),
             f"plan_warm_start must be true or false, got {self.plan_warm_start!r}")
        need(number(self.plan_warm_std) and self.plan_warm_std > 0,
             f"plan_warm_std must be > 0, got {self.plan_warm_std!r}")
        if isinstance(self.top_k, int) and isinstance(self.candidates, int):
            need(self.top_k <= self.candidates,
                 f"top_k ({self.top_k}) must not exceed candidates ({self.candidates})")
        if integer(self.seq_len):
            need(self.seq_len >= 2,
                 f"seq_len must be at least 2 (reward(s_t) learns r_(t-1)), got {self.seq_len}")
        if isinstance(self.seq_len, int) and isinstance(self.max_episode_steps, int) \
                and isinstance(self.action_repeat, int) and self.action_repeat > 0:
            need(self.seq_len <= self.episode_len,
                 f"seq_len ({self.seq_len}) is longer than an episode ({self.episode_len} agent steps = "
                 f"max_episode_steps {self.max_episode_steps} / action_repeat {self.action_repeat}); "
                 "no training sequence could be cut from it")
        if problems:
            raise ValueError("Invalid config:\n  - " + "\n  - ".join(problems))
        return self

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (unknown names raise ValueError), validated."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"Unknown config field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes).validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Build from a dict, refusing unknown keys with a clear message."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"Unknown config field(s): {', '.join(unknown)}")
        return cls(**data).validate()

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON with `safeio.write_atomic`, as every file of a run is."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Config":
        """Read a config JSON written by `save`."""
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); fix or delete it") from None
        return cls.from_dict(data)


PRESETS: dict[str, dict[str, Any]] = {
    # The seed's Colab batch (16 × 25 steps) with the paper's model. Pendulum's action is 1-D, so CEM
    # searches 12 numbers: 500 candidates × 5 refits (elite 10%) find its optimum and cost a quarter of
    # the paper's 1000 × 10.
    # Its KL terms (measured, docs/results/pendulum_analysis.md): with 3 free nats the mean KL sat at the
    # clamp, so the prior got no gradient and imagined rewards drifted off within 6 steps; 1 free nat
    # with DreamerV2's KL balancing (0.8 to the prior) cut the 6-step open-loop reward error 7.5 -> 1.3.
    # 100 gradient steps per episode: the seed's 50 leave the model 12.5× short of the paper's budget.
    "pendulum": {"candidates": 500, "optim_iters": 5, "top_k": 50, "eval_every": 20,
                 "train_steps": 100, "free_nats": 1.0, "kl_balance": 0.8},
    # The paper's own training sizes (batch 50 × 50, 100 gradient steps per episode).
    "paper": {"batch_size": 50, "seq_len": 50, "train_steps": 100, "total_iterations": 1000},
    # Tiny everything, for CI and notebooks under nbval: seconds per iteration.
    "smoke": {
        "max_episode_steps": 30, "cnn_depth": 4, "deter_dim": 16, "stoch_dim": 4, "hidden_dim": 16,
        "batch_size": 4, "seq_len": 6, "train_steps": 3, "horizon": 3, "candidates": 16,
        "optim_iters": 2, "top_k": 4, "seed_episodes": 2, "total_iterations": 4,
        "checkpoint_every": 2, "eval_every": 2, "eval_episodes": 2, "precision": "fp32",
    },
}


# PlaNet's training and planning sizes (google-research/planet's defaults): batch 50 × 50,
# 100 gradient steps per collected episode, a depth-32 conv encoder/decoder, 3 free nats and plain KL,
# CEM 1000 × 10 (top 100) from N(0, 1) at every step. `--paper-sizes` on the command line (or
# `get_config(preset, **PAPER_SIZES)`) puts a task preset back on them.
PAPER_SIZES: dict[str, Any] = {
    "batch_size": 50, "seq_len": 50, "train_steps": 100, "cnn_depth": 32, "free_nats": 3.0, "kl_balance": 0.5,
    "candidates": 1000, "optim_iters": 10, "top_k": 100, "plan_warm_start": False,
}


# The DeepMind Control Suite tasks as PlaNet ran them: 1000 environment steps per episode, 64×64 frames
# from camera 0, the task's action repeat (google-research/planet, planet/scripts/tasks.py), horizon 12,
# 5 seed episodes, the paper's model; 100 iterations = 105 episodes, about the 100k-env-step point where
# PlaNet's results are compared. The training and planning sizes are the recipe that learned cartpole
# here (docs/results/cartpole_swingup.md; 332 and 237 after 45 episodes on seeds 1 and 2 in bf16):
# batch 16 × 25, 100 gradient steps per episode, 1 free nat with KL balancing 0.8 (the Pendulum
# analysis above), CEM 500 × 5 (top 50) from N(0, 1), with 10 refits for six action dimensions (below).
# Two cheaper recipes were measured and not kept (docs/results/cost.md): depth-16 convs with 75 steps per
# episode stalled cartpole's learning on both seeds, and the warm-started CEM 250 × 3 (`--set
# plan_warm_start=true candidates=250 optim_iters=3 top_k=25`: 1.23× / 1.52× fewer CPU seconds per episode
# on cartpole / walker) fell behind by 45 episodes on both seeds (254 and 117).
def _paper_task(env_name: str, action_repeat: int, train_steps: int = 100, optim_iters: int = 5) -> dict[str, Any]:
    return {"env_name": env_name, "action_repeat": action_repeat, "max_episode_steps": 1000,
            "batch_size": 16, "seq_len": 25, "train_steps": train_steps, "free_nats": 1.0, "kl_balance": 0.8,
            "candidates": 500, "optim_iters": optim_iters, "top_k": 50, "total_iterations": 100}


# Six action dimensions (cheetah_run, walker_walk, half_cheetah) plan with PlaNet's 10 refits: after 5 refits
# over 12 steps × 6 dimensions the elite mean, the action taken, is still shrunk toward zero (walker's
# mean |a| 0.24 against 0.37–0.40 with 10), leaving 12.5% of the paper's 1000 × 10 predicted return where
# 10 refits leave 0.7%; on walker's model after 40 iterations 10 refits played 132.7 against 102.5 (after
# 80, alike: 182.9 against 191.0), and the gain is in what a young model collects: cheetah_run seed 2,
# which stalled on the free-nats clamp at 5 refits (89.9 at 25 episodes, 87.4 at 100), scored 157.7 at 25
# with 10 (docs/results/benchmark/sweep.md's notes). One and two dimensions keep 5.
SIX_DIM_REFITS = 10


PRESETS.update({
    "cartpole_swingup": _paper_task("dmc:cartpole-swingup", 8),
    "reacher_easy": _paper_task("dmc:reacher-easy", 4),
    # An ELU encoder, as cup_catch (below): the benchmark's seed 2 at 5 refits stalled with a ReLU encoder gone
    # silent, and its live ReLU run at 10 ended at 158.6 after 100 episodes (PlaNet: 165); on cartpole the
    # preset with ELU led the ReLU runs of the same seeds at 25, 35 and 45 episodes (docs/results/encoder.md).
    "cheetah_run": {**_paper_task("dmc:cheetah-run", 4, optim_iters=SIX_DIM_REFITS), "encoder_activation": "elu"},
    # 200 gradient steps per episode, as cup_catch (below): at 100 the benchmark's seed 1 ended at 91.1 after
    # 100 episodes (PlaNet: 136), its model not foreseeing what the finger's flick does to the spinner;
    # at 200 the same seed led at 25 and 45 episodes (19.9 and 65.5 against 0.3 and 18.0; sweep.md's notes).
    "finger_spin": _paper_task("dmc:finger-spin", 2, train_steps=200),
    # 200 gradient steps per episode: at 100 the model never drew the ball and the benchmark's seed 1
    # ended at the do-nothing level (97.9 against zero actions' 99.1 on the same seeds); at 200 the same
    # seed caught four swinging balls in its first evaluation, where the 100-step run caught none in five
    # (docs/results/benchmark/sweep.md's notes). An ELU encoder: its frames differ least of the suite's (a
    # small cup and a 3-pixel ball on a still background), and the 200-step run's ReLU encoder went silent
    # in its first 100 steps and stayed so, a blind model earning what zero actions earn (196.9 against
    # 198.3 after 85 episodes); with ELU the same seed's encoder woke after 14 iterations
    # (docs/results/encoder.md).
    "cup_catch": {**_paper_task("dmc:ball_in_cup-catch", 4, train_steps=200), "encoder_activation": "elu"},
    "walker_walk": _paper_task("dmc:walker-walk", 2, optim_iters=SIX_DIM_REFITS),
    # Gymnasium's HalfCheetah-v5, drawn at 64×64 by its tracking camera (camera 0, as for the suite).
    # Action repeat 1: each v5 step already runs 5 MuJoCo steps (0.05 s, against cheetah_run's
    # 4 × 0.01 s), and the 1000 frames per episode are the 12.3 MB per episode the RAM cache is sized for.
    "half_cheetah": _paper_task("HalfCheetah-v5", 1, optim_iters=SIX_DIM_REFITS),
})


def get_config(preset: str = "pendulum", **overrides: Any) -> Config:
    """The named preset with `overrides` applied, validated."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return Config(preset=preset).replace(**{**PRESETS[preset], **overrides})


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a command-line `key=value` into (key, value typed like the Config field)."""
    if "=" not in text:
        raise ValueError(f"Expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    types = {f.name: f.type for f in fields(Config)}
    if key not in types:
        raise ValueError(f"Unknown config field {key!r}; known: {', '.join(sorted(set(types) - {'preset'}))}")
    if key == "preset":  # a name for the defaults a run started from, not a setting to relabel it with
        raise ValueError("preset is not a setting: choose a new run's preset with --preset NAME")
    kind = types[key]
    try:
        if kind in ("int", int):
            return key, int(raw)
        if kind in ("float", float):
            return key, float(raw)
        if kind in ("bool", bool):
            words = {"1": True, "true": True, "yes": True, "on": True,
                     "0": False, "false": False, "no": False, "off": False}
            return key, words[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"{key} expects true or false, got {raw!r}") from None
    except ValueError:
        raise ValueError(f"{key} expects {kind}, got {raw!r}") from None
    return key, raw


def changes_from_args(overrides: Sequence[str] = (), iterations: int | None = None) -> dict[str, Any]:
    """The config changes a command line asks for: `--set key=value …` and `--iterations N`."""
    changes = dict(parse_override(text) for text in overrides)
    if iterations is not None:
        changes["total_iterations"] = iterations
    return changes
