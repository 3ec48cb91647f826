"""Cross-entropy-method planning over the learned latent dynamics (PlaNet §3, Kaixhin/PlaNet's planner).

From each belief the planner samples `candidates` action sequences of length `horizon` from a diagonal
Gaussian, imagines them with the model's prior (`img_step`), scores each by the sum of predicted
rewards, refits the Gaussian to the `top_k` best and repeats `optim_iters` times; the first mean action
is the plan. The class only holds hyperparameters: a call is a pure function of (model, state, generator).
`plan(..., start=(mean, std))` starts the search from another Gaussian than N(0, 1): `warm_start`
turns the previous step's plan into one (shifted by a step, std widened), which the agent uses when
`config.plan_warm_start` is set; the search itself is the same.
On CPU the imagining runs through planet_colab.cpu_kernels.FastRollout (the same math, fused; checked
against `imagined_returns` once per model class); on other devices through `imagined_returns`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from planet_colab.checks import positive_int
from planet_colab.cpu_kernels import FastRollout
from planet_colab.precision import autocast_context, autocast_dtype, resolve_precision

ACTION_LOW, ACTION_HIGH = -1.0, 1.0


class CEMPlanner:
    """CEM over action sequences: call it as `planner(model, state, generator) -> (N, A)` actions in [-1, 1]."""

    def __init__(self, action_dim: int, horizon: int = 12, candidates: int = 1000, optim_iters: int = 10,
                 top_k: int = 100, precision: str = "fp32", *, fast_rollout: bool = True) -> None:
        for name, value in (("action_dim", action_dim), ("horizon", horizon), ("candidates", candidates),
                            ("optim_iters", optim_iters), ("top_k", top_k)):
            positive_int(name, value)
        if top_k > candidates:
            raise ValueError(f"top_k ({top_k}) must not exceed candidates ({candidates})")
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be one of 'auto', 'fp32', 'bf16', 'fp16', got {precision!r}")
        self.action_dim = action_dim
        self.horizon = horizon
        self.candidates = candidates
        self.optim_iters = optim_iters
        self.top_k = top_k
        self.precision = precision
        # False forces the generic img_step/reward rollout on CPU too (for comparison).
        self.fast_rollout = fast_rollout

    @classmethod
    def from_config(cls, config: Any, action_dim: int, precision: str | None = None) -> "CEMPlanner":
        """A planner with the config's CEM hyperparameters; precision defaults to `config.precision`."""
        return cls(action_dim, horizon=config.horizon, candidates=config.candidates,
                   optim_iters=config.optim_iters, top_k=config.top_k,
                   precision=config.precision if precision is None else precision)

    def __repr__(self) -> str:
        return (f"CEMPlanner(action_dim={self.action_dim}, horizon={self.horizon}, candidates={self.candidates}, "
                f"optim_iters={self.optim_iters}, top_k={self.top_k}, precision={self.precision!r})")

    def __call__(self, model: Any, state: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """Plan from N beliefs `state` (RSSMState, fields (N, ·)); returns the first mean actions (N, A) in fp32."""
        return self.plan(model, state, generator)[0]

    def plan(self, model: Any, state: Any, generator: torch.Generator | None = None,
             start: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The whole CEM plan (horizon, N, A) fp32 from N beliefs; `__call__` acts on its first step.

        `start` = (mean, std), each (horizon, N, A): the search's first Gaussian (default N(0, 1)).
        """
        deter, stoch = state
        device = deter.device
        if deter.dim() != 2 or stoch.dim() != 2 or deter.shape[0] != stoch.shape[0]:
            raise ValueError(f"state must hold (N, deter_dim) and (N, stoch_dim) tensors, got "
                             f"{tuple(deter.shape)} and {tuple(stoch.shape)}")
        model_actions = getattr(model, "action_dim", self.action_dim)
        if model_actions != self.action_dim:
            raise ValueError(f"planner action_dim ({self.action_dim}) differs from the model's ({model_actions})")
        shape = (self.horizon, deter.shape[0], self.action_dim)
        if start is not None and any(tuple(t.shape) != shape for t in start):
            raise ValueError(f"start must be (mean, std) of shape {shape}, got "
                             f"{[tuple(t.shape) for t in start]}")
        precision = resolve_precision(self.precision, device)
        with torch.inference_mode():
            return _cem(model, state, generator, self.action_dim, self.horizon, self.candidates,
                        self.optim_iters, self.top_k, precision, self.fast_rollout, start)


def warm_start(plan: torch.Tensor, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The next step's first Gaussian from this step's plan (H, N, A): its steps 1..H-1 as the mean with
    std `std`, and a new last step N(0, 1), as the paper's search would start it."""
    mean = torch.cat([plan[1:], torch.zeros_like(plan[:1])])
    spread = torch.cat([torch.full_like(plan[1:], float(std)), torch.ones_like(plan[:1])])
    return mean, spread


def _cem(model: Any, state: Any, generator: torch.Generator | None, action_dim: int, horizon: int,
         candidates: int, optim_iters: int, top_k: int, precision: str, fast: bool = True,
         first: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The CEM loop proper (inside inference mode, `precision` resolved): the final mean plan; see CEMPlanner."""
    n, device = state.deter.shape[0], state.deter.device
    H, J, K, A = horizon, candidates, top_k, action_dim
    # Every candidate of belief i starts from belief i: rows i*J … (i+1)*J-1.
    start = state._replace(deter=state.deter.repeat_interleave(J, dim=0),
                           stoch=state.stoch.repeat_interleave(J, dim=0))
    returns_of = _rollout(model, start, H, precision, fast)
    mean = torch.zeros(H, n, 1, A, device=device)
    std = torch.ones(H, n, 1, A, device=device)
    if first is not None:  # a warm start (see warm_start); N(0, 1) is the paper's
        mean, std = (t.to(device, torch.float32).reshape(H, n, 1, A) for t in first)
    offsets = (torch.arange(n, device=device) * J).unsqueeze(1)  # (n, 1)
    for _ in range(optim_iters):
        noise = torch.randn(H, n, J, A, generator=generator, device=device)
        actions = (mean + std * noise).clamp_(ACTION_LOW, ACTION_HIGH).view(H, n * J, A)  # (H, n·J, A)
        returns = returns_of(actions, generator)  # (n·J,)
        top = returns.view(n, J).topk(K, dim=1, sorted=False).indices + offsets  # (n, K)
        elite = actions[:, top.view(-1)].view(H, n, K, A)
        mean = elite.mean(dim=2, keepdim=True)
        std = elite.std(dim=2, unbiased=False, keepdim=True)
    return mean[:, :, 0].float()  # (H, n, A)


def _rollout(model: Any, start: Any, horizon: int, precision: str, fast: bool
             ) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]:
    """`returns_of(actions (H, B, A), generator) -> (B,)` from `start`: the fused rollout on CPU where
    it applies (measured faster there; never measured on a GPU), else `imagined_returns` under autocast."""
    device = start.deter.device
    if fast and device.type == "cpu" and FastRollout.supports(model, imagined_returns):
        return FastRollout(model, start, horizon, autocast_dtype(precision) or torch.float32)

    def returns_of(actions: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        with autocast_context(precision, device):
            return imagined_returns(model, start, actions, generator)
    return returns_of


def imagined_returns(model: Any, state: Any, actions: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Sum of predicted rewards of imagining `actions` (H, B, A) from `state` (B rows) via the public API; (B,) fp32."""
    H = actions.shape[0]
    deters, stochs = [], []
    for t in range(H):
        state = model.img_step(state, actions[t], generator=generator)[0]
        deters.append(state.deter)
        stochs.append(state.stoch)
    # One reward call over all H·B imagined states: bigger matmuls, no per-step Python overhead.
    every = state._replace(deter=torch.cat(deters), stoch=torch.cat(stochs))  # (H·B, ·)
    return model.reward(every).float().view(H, -1).sum(0)
