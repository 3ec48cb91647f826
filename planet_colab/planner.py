"""Cross-entropy-method planning over the learned latent dynamics (PlaNet §3, Kaixhin/PlaNet's planner).

From each belief the planner samples `candidates` action sequences of length `horizon` from a diagonal
Gaussian, imagines them with the model's prior (`img_step`), scores each by the sum of predicted
rewards, refits the Gaussian to the `top_k` best and repeats `optim_iters` times; the first mean action
is the plan. The class only holds hyperparameters: a call is a pure function of (model, state, generator).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from planet_colab.precision import autocast_context, autocast_dtype, resolve_precision

ACTION_LOW, ACTION_HIGH = -1.0, 1.0


class CEMPlanner:
    """CEM over action sequences: call it as `planner(model, state, generator) -> (N, A)` actions in [-1, 1]."""

    def __init__(self, action_dim: int, horizon: int = 12, candidates: int = 1000, optim_iters: int = 10,
                 top_k: int = 100, precision: str = "fp32", *, fast_rollout: bool = True) -> None:
        for name, value in (("action_dim", action_dim), ("horizon", horizon), ("candidates", candidates),
                            ("optim_iters", optim_iters), ("top_k", top_k)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
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
        # False forces the generic img_step/reward path (for comparison and for models it cannot verify).
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
        deter, stoch = state
        device = deter.device
        if deter.dim() != 2 or stoch.dim() != 2 or deter.shape[0] != stoch.shape[0]:
            raise ValueError(f"state must hold (N, deter_dim) and (N, stoch_dim) tensors, got "
                             f"{tuple(deter.shape)} and {tuple(stoch.shape)}")
        model_actions = getattr(model, "action_dim", self.action_dim)
        if model_actions != self.action_dim:
            raise ValueError(f"planner action_dim ({self.action_dim}) differs from the model's ({model_actions})")
        # "auto" → bf16 on CPUs with native bf16 dot products / Ampere+ GPUs, else fp32 (or fp16 on older GPUs).
        precision = resolve_precision(self.precision, device)
        with torch.inference_mode():
            return _cem(model, state, generator, self.action_dim, self.horizon, self.candidates,
                        self.optim_iters, self.top_k, precision, self.fast_rollout)


def _cem(model: Any, state: Any, generator: torch.Generator | None, action_dim: int, horizon: int,
         candidates: int, optim_iters: int, top_k: int, precision: str, fast: bool = True) -> torch.Tensor:
    """The CEM loop proper (inside inference mode, `precision` resolved); see CEMPlanner."""
    n, device = state.deter.shape[0], state.deter.device
    dtype = autocast_dtype(precision) or torch.float32
    H, J, K, A = horizon, candidates, top_k, action_dim
    # Every candidate of belief i starts from belief i: rows i*J … (i+1)*J-1.
    start = state._replace(deter=state.deter.repeat_interleave(J, dim=0),
                           stoch=state.stoch.repeat_interleave(J, dim=0))
    rollout = FastRollout(model, start, H, dtype) if fast and FastRollout.supports(model) else None
    mean = torch.zeros(H, n, 1, A, device=device)
    std = torch.ones(H, n, 1, A, device=device)
    offsets = (torch.arange(n, device=device) * J).unsqueeze(1)  # (n, 1)
    for _ in range(optim_iters):
        noise = torch.randn(H, n, J, A, generator=generator, device=device)
        actions = (mean + std * noise).clamp_(ACTION_LOW, ACTION_HIGH).view(H, n * J, A)  # (H, n·J, A)
        if rollout is not None:
            returns = rollout(actions, generator)
        else:
            with autocast_context(precision, device):
                returns = imagined_returns(model, start, actions, generator)
        top = returns.view(n, J).topk(K, dim=1, sorted=False).indices + offsets  # (n, K)
        elite = actions[:, top.view(-1)].view(H, n, K, A)
        mean = elite.mean(dim=2, keepdim=True)
        std = elite.std(dim=2, unbiased=False, keepdim=True)
    return mean[0, :, 0].float()  # (n, A)


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


class FastRollout:
    """`imagined_returns` for planet_colab's WorldModel, rewritten for speed from its public submodules.

    Same math as img_step + reward (checked against them once per model class, else unused): the
    rollout is GEMM-bound (GRU 200×600 over all candidates) plus many small elementwise calls, so it
    keeps every step's [action | stoch | deter | GRU input] in one preallocated buffer (no cat, no
    per-step allocation of states, biases folded into the matmuls), fuses the r/z gates of both GRU
    inputs into one matmul, casts weights to the compute dtype once per plan instead of once per
    call, and sums the reward head's last (linear) layer over time before applying it.
    """

    _verified: dict[type, bool] = {}

    @classmethod
    def supports(cls, model: Any) -> bool:
        """Whether `model` has the WorldModel layout this rollout re-implements (and matches it numerically)."""
        kind = type(model)
        if kind not in cls._verified:
            cls._verified[kind] = cls._has_layout(model) and cls._matches(model)
        return cls._verified[kind]

    @staticmethod
    def _has_layout(model: Any) -> bool:
        try:
            head = model.reward_head
            return (isinstance(model.img_in, torch.nn.Linear) and isinstance(model.gru, torch.nn.GRUCell)
                    and isinstance(model.img_out, torch.nn.Linear) and isinstance(model.prior_head, torch.nn.Linear)
                    and len(head) == 5 and all(isinstance(head[i], torch.nn.Linear) for i in (0, 2, 4))
                    and all(isinstance(head[i], torch.nn.ReLU) for i in (1, 3))
                    and isinstance(model.min_std, float))
        except (AttributeError, TypeError):
            return False

    @classmethod
    def _matches(cls, model: Any) -> bool:
        """Compare with the model's own img_step/reward on a few random states (fp32)."""
        device = model.img_in.weight.device
        with torch.inference_mode():
            g = torch.Generator(device=device).manual_seed(0)
            B = 5
            start = model.initial_state(B, device=device)
            start = start._replace(deter=torch.randn(start.deter.shape, generator=g, device=device),
                                   stoch=torch.randn(start.stoch.shape, generator=g, device=device))
            actions = torch.rand(3, B, model.action_dim, generator=g, device=device) * 2 - 1
            want = imagined_returns(model, start, actions, torch.Generator(device=device).manual_seed(1))
            got = cls(model, start, 3, torch.float32)(actions, torch.Generator(device=device).manual_seed(1))
        ok = torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()) + 1e-5)
        if not ok:
            import warnings
            warnings.warn("CEM fast rollout disagrees with the model's img_step/reward; planning with the "
                          "slower generic path (update planet_colab/planner.py's FastRollout).", RuntimeWarning)
        return ok

    def __init__(self, model: Any, start: Any, horizon: int, dtype: torch.dtype) -> None:
        S, D = start.stoch.shape[1], start.deter.shape[1]
        B, device = start.deter.shape[0], start.deter.device
        A, Hd = model.img_in.in_features - S, model.img_in.out_features
        self.A, self.S, self.D, self.B, self.H, self.dtype = A, S, D, B, horizon, dtype
        self.min_std = model.min_std
        # Row layout per step: [a_t (A) | stoch_t (S) | 1 | deter_t (D) | x_t (Hd) | 1], x_t = GRU input.
        # The constant-1 columns carry the biases inside the matmuls (addmm would first copy the
        # bias into every output row: one more pass over memory per layer), and every layer's
        # input is a column range of the row, so nothing is concatenated.
        self.o = A + S  # the first 1 column
        self.buf = torch.empty(horizon + 1, B, A + S + D + Hd + 2, device=device, dtype=dtype)
        self.buf[:, :, self.o] = 1
        self.buf[:, :, -1] = 1
        self.buf[0, :, A:A + S] = start.stoch
        self.buf[0, :, self.o + 1:self.o + 1 + D] = start.deter

        def w(*blocks: torch.Tensor) -> torch.Tensor:
            """Stack input-blocks of (out, in) weights/biases into one (in_total, out) matrix."""
            return torch.cat([b.detach().reshape(b.shape[0], -1) if b.dim() == 2 else b.detach()[:, None]
                              for b in blocks], dim=1).t().to(dtype).contiguous()

        w_in, gru = model.img_in.weight, model.gru
        self.w_in = w(w_in[:, S:], w_in[:, :S], model.img_in.bias)  # on [a | stoch | 1]
        # GRU gates (r, z, n): r and z see W_h·h + W_i·x, one matmul on [1 | h | x]; n needs them apart.
        self.w_rz = w(gru.bias_ih[:2 * D] + gru.bias_hh[:2 * D], gru.weight_hh[:2 * D], gru.weight_ih[:2 * D])
        self.w_hn = w(gru.bias_hh[2 * D:], gru.weight_hh[2 * D:])  # on [1 | h]
        self.w_xn = w(gru.weight_ih[2 * D:], gru.bias_ih[2 * D:])  # on [x | 1]
        self.w_out = w(model.img_out.bias, model.img_out.weight)  # on [1 | h]
        self.w_prior = model.prior_head.weight.detach().t().to(dtype).contiguous()  # (Hd, 2S): mean | std
        self.b_prior = model.prior_head.bias.detach().to(dtype)
        r1, r2, r3 = model.reward_head[0], model.reward_head[2], model.reward_head[4]
        self.w_r1 = w(r1.weight[:, D:], r1.bias, r1.weight[:, :D])  # on [stoch | 1 | deter]
        self.w_r2, self.b_r2 = r2.weight.detach().t().to(dtype), r2.bias.detach().to(dtype)
        self.w_r3, self.b_r3 = r3.weight.detach().float().t(), r3.bias.detach().float()  # fp32: returns are ranked
        # Temporaries reused by every step and iteration: CPU tensors this size are not cached by
        # PyTorch's allocator, and fresh pages cost page faults.
        e = lambda *shape, dt=dtype: torch.empty(*shape, device=device, dtype=dt)  # noqa: E731
        # Matmul outputs stay contiguous: MKL's fp32 GEMM is up to 2× slower writing into a strided view.
        self.t_x, self.t_rz, self.t_xn, self.t_hn, self.t_hid = e(B, Hd), e(B, 2 * D), e(B, D), e(B, D), e(B, Hd)
        self.t_stats = e(B, 2 * S)
        self.t_mean32, self.t_std32, self.t_eps = (e(B, S, dt=torch.float32) for _ in range(3))
        self.t_hidden1, self.t_hidden2 = e(horizon * B, Hd), e(horizon * B, Hd)

    def __call__(self, actions: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Predicted returns (B,) fp32 of action sequences (H, B, A)."""
        A, S, D, H, B, o, buf = self.A, self.S, self.D, self.H, self.B, self.o, self.buf
        same_device = generator is None or generator.device == buf.device
        buf[:H, :, :A] = actions
        for t in range(H):
            cur, nxt = buf[t], buf[t + 1]
            cur[:, o + 1 + D:-1] = F.elu_(torch.mm(cur[:, :o + 1], self.w_in, out=self.t_x))
            rz = torch.mm(cur[:, o:-1], self.w_rz, out=self.t_rz).sigmoid_()  # (B, 2D)
            n = torch.mm(cur[:, o + 1 + D:], self.w_xn, out=self.t_xn)
            n.addcmul_(rz[:, :D], torch.mm(cur[:, o:o + 1 + D], self.w_hn, out=self.t_hn)).tanh_()
            torch.lerp(n, cur[:, o + 1:o + 1 + D], rz[:, D:], out=nxt[:, o + 1:o + 1 + D])  # (1 - z)·n + z·h
            hid = F.elu_(torch.mm(nxt[:, o:o + 1 + D], self.w_out, out=self.t_hid))
            # The prior's mean and std in fp32, as the model's img_step computes them.
            stats = torch.addmm(self.b_prior, hid, self.w_prior, out=self.t_stats)  # (B, 2S)
            # Contiguous fp32 copies: softplus on a strided half is ~10× slower than on a contiguous one.
            mean = self.t_mean32.copy_(stats[:, :S])
            std = F.softplus(self.t_std32.copy_(stats[:, S:]))
            if same_device:
                eps = self.t_eps.normal_(generator=generator)
            else:
                eps = torch.randn(mean.shape, generator=generator, device=generator.device).to(buf.device)
            torch.addcmul(mean, std.add_(self.min_std), eps, out=nxt[:, A:A + S])
        feats = buf[1:, :, A:].reshape(H * B, -1)[:, :S + 1 + D]  # [stoch | 1 | deter] of every imagined state
        hidden = torch.mm(feats, self.w_r1, out=self.t_hidden1).relu_()
        hidden2 = torch.addmm(self.b_r2, hidden, self.w_r2, out=self.t_hidden2).relu_()  # (H·B, Hd)
        # The last layer is linear, so Σ_t (w·h_t + b) = w·Σ_t h_t + H·b: one small fp32 matmul.
        # (sum accumulates in fp32 internally even for bf16 input.)
        summed = hidden2.view(H, B, -1).sum(0).float()  # (B, Hd)
        return (summed @ self.w_r3).squeeze(1) + H * self.b_r3
