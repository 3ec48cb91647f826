"""The PlaNet world model (Hafner et al., 2019): conv encoder, recurrent state-space model (RSSM),
transposed-conv decoder and reward head, plus observation preprocessing.

The RSSM's state s_t = (h_t, z_t): a deterministic GRU state and a stochastic sample. One step:
    h_t = GRU(h_{t-1}, ELU(W·[z_{t-1}, a_{t-1}]))                 the deterministic transition
    prior     p(z_t | h_t)      = N(μ, σ), an MLP on h_t            img_step (imagining)
    posterior q(z_t | h_t, o_t) = N(μ, σ), an MLP on [h_t, e_t]     obs_step (filtering), e_t = encode(o_t)
with σ = softplus(·) + min_std; the decoder and the reward head read the features [h_t, z_t].

Sizes come from `Config` (cnn_depth, deter_dim, stoch_dim, hidden_dim, min_std). Tensor math only:
nothing here touches files. On CPU the conv stacks run through planet_colab.cpu_kernels (the same
layers' weights, faster oneDNN paths); on other devices through the plain nn layers below.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from planet_colab import cpu_kernels
from planet_colab.checks import positive_int
from planet_colab.config import Config
from planet_colab.precision import FP32_PARTS


class RSSMState(NamedTuple):
    """Model state: deterministic GRU state (N, deter_dim) and stochastic sample (N, stoch_dim)."""

    deter: Tensor
    stoch: Tensor


def preprocess_obs(obs: Tensor, bit_depth: int, generator: torch.Generator | None = None,
                   *, noise: bool = True) -> Tensor:
    """Observations in [0,1] (or uint8) (…,64,64,3) → `bit_depth` bits + uniform dequantisation noise, in [-0.5, 0.5).

    The one place where pixels become model inputs (training and acting). Noise comes from
    `generator` when given (bit-exact resume); `noise=False` uses the bin centres instead.
    """
    if not isinstance(obs, Tensor):
        raise ValueError(f"obs must be a torch.Tensor, got {type(obs).__name__}")
    if obs.dim() < 3 or tuple(obs.shape[-3:]) != (64, 64, 3):
        raise ValueError(f"obs must have shape (..., 64, 64, 3), got {tuple(obs.shape)}")
    if not 1 <= int(bit_depth) <= 8:
        raise ValueError(f"bit_depth must be in 1..8, got {bit_depth!r}")
    if obs.dtype not in (torch.uint8, torch.float32):
        obs = obs.float()
    shift, bins = 2 ** (8 - bit_depth), 2 ** bit_depth
    # floor(round(255·obs) / shift) − bins/2 in three passes: the +0.5/shift does the rounding
    # (255·k/255 is not always exactly k in float32), and bins/2 is an integer so it commutes with floor.
    scale = 1.0 if obs.dtype == torch.uint8 else 255.0
    x = obs.mul(scale / shift).add_(0.5 / shift - bins // 2).floor_()  # integer levels − bins/2
    if noise:
        gdev = generator.device if generator is not None else x.device
        x.add_(torch.rand(x.shape, generator=generator, device=gdev, dtype=x.dtype).to(x.device))
    else:
        x.add_(0.5)
    return x.mul_(1.0 / bins)


def _sample(mean: Tensor, std: Tensor, generator: torch.Generator | None) -> Tensor:
    """mean + std·ε with ε ~ N(0, I) drawn from `generator` (the one sampling path of the model)."""
    gdev = generator.device if generator is not None else mean.device
    eps = torch.randn(mean.shape, generator=generator, device=gdev, dtype=mean.dtype).to(mean.device)
    return torch.addcmul(mean, std, eps)


class WorldModel(nn.Module):
    """PlaNet's recurrent state-space model with conv encoder/decoder and reward head.

    Time alignment (stored step t = (o_t, a_t, r_t); r_t is received after taking a_t in o_t):

        s_0 = obs_step(initial_state, a = 0,     embed(o_0))
        s_t = obs_step(s_{t-1},       a_{t-1},   embed(o_t))      t ≥ 1
        decode(s_t) reconstructs o_t;  reward(s_t) predicts r_{t-1} (t ≥ 1; reward(s_0) has no target)

    so `forward` never uses a_{T-1} or r_{T-1}, and reward at t depends only on actions < t.
    Planning from the belief s_t (after filtering o_t): s_{t+1} = img_step(s_t, a_t), reward(s_{t+1}) ≈ r_t.
    Acting: state = initial_state, prev_action = 0 at episode start; per step filter o_t with
    prev_action, plan a_t, prev_action = a_t.
    """

    def __init__(self, action_dim: int, config: Config) -> None:
        super().__init__()
        positive_int("action_dim", action_dim)
        self.config = config
        self.action_dim = action_dim
        d, D, S, H = config.cnn_depth, config.deter_dim, config.stoch_dim, config.hidden_dim
        self.deter_dim, self.stoch_dim, self.hidden_dim = D, S, H
        self.embed_dim = config.embed_dim
        self.min_std = float(config.min_std)

        # 64 → 31 → 14 → 6 → 2; 8d channels × 2 × 2 = 32d = embed_dim
        act = {"relu": nn.ReLU, "elu": nn.ELU}[config.encoder_activation]
        self.encoder = nn.Sequential(
            nn.Conv2d(3, d, 4, 2), act(),
            nn.Conv2d(d, 2 * d, 4, 2), act(),
            nn.Conv2d(2 * d, 4 * d, 4, 2), act(),
            nn.Conv2d(4 * d, 8 * d, 4, 2), act(),
        )
        # 1 → 5 → 13 → 30 → 64
        self.decoder_in = nn.Linear(D + S, 32 * d)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(32 * d, 4 * d, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(4 * d, 2 * d, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(2 * d, d, 6, 2), nn.ReLU(),
            nn.ConvTranspose2d(d, 3, 6, 2),
        )
        # Transition: [stoch, action] → hidden → GRU → hidden → prior (mean, std)
        self.img_in = nn.Linear(S + action_dim, H)
        self.gru = nn.GRUCell(H, D)
        self.img_out = nn.Linear(D, H)
        self.prior_head = nn.Linear(H, 2 * S)
        # Posterior: [deter, embed] → hidden → (mean, std)
        self.post_in = nn.Linear(D + self.embed_dim, H)
        self.post_head = nn.Linear(H, 2 * S)
        # Reward MLP on the features [deter, stoch]
        self.reward_head = nn.Sequential(
            nn.Linear(D + S, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, 1),
        )
        # False runs the plain conv layers on CPU too (the reference the CPU kernels are tested against).
        self.use_cpu_kernels = True
        # Parts that run in fp32 even under bf16/fp16 autocast (precision.FP32_PARTS says which and why).
        self.fp32_parts: frozenset[str] = FP32_PARTS

    def _part(self, name: str) -> contextlib.AbstractContextManager:
        """Autocast switched off for part `name` when it is one of `fp32_parts` (inputs are cast to fp32 there)."""
        if name in self.fp32_parts and torch.is_autocast_enabled(self.img_in.weight.device.type):
            return torch.autocast(self.img_in.weight.device.type, enabled=False)
        return contextlib.nullcontext()

    # ---- helpers -------------------------------------------------------------------------------
    def _stats(self, head: nn.Linear, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Gaussian (mean, std) in fp32 from a head; std = softplus(x) + min_std."""
        mean, raw = head(hidden).float().chunk(2, dim=-1)
        return mean, F.softplus(raw) + self.min_std

    def _img_core(self, state: RSSMState, action: Tensor) -> Tensor:
        """The deterministic part of a transition: the next GRU state (N, D)."""
        with self._part("transition"):
            x = F.elu(self.img_in(torch.cat([state.stoch, action.to(state.stoch.dtype)], dim=-1)))
            return self.gru(x, state.deter.to(x.dtype)).float()

    def _post_stats(self, deter: Tensor, embed: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior (mean, std) from the deterministic state and an observation embedding."""
        with self._part("posterior"):
            return self._stats(self.post_head, F.elu(self.post_in(torch.cat([deter, embed.to(deter.dtype)], -1))))

    def _prior_stats(self, deter: Tensor) -> tuple[Tensor, Tensor]:
        """Prior (mean, std) from the deterministic state."""
        with self._part("prior"):
            return self._stats(self.prior_head, F.elu(self.img_out(deter)))

    # ---- public single-step API ----------------------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> RSSMState:
        """All-zero state for `batch_size` sequences (start of an episode)."""
        device = device if device is not None else self.img_in.weight.device
        return RSSMState(torch.zeros(batch_size, self.deter_dim, device=device),
                         torch.zeros(batch_size, self.stoch_dim, device=device))

    def encode(self, obs_pre: Tensor) -> Tensor:
        """Preprocessed observations (N, 64, 64, 3) → embeddings (N, embed_dim)."""
        with self._part("encoder"):
            if self.use_cpu_kernels and obs_pre.device.type == "cpu":
                return cpu_kernels.encode(self.encoder, obs_pre)
            x = self.encoder(obs_pre.permute(0, 3, 1, 2))  # (N, 8·depth, 2, 2)
            return x.permute(0, 2, 3, 1).flatten(1)  # (N, 32·depth), flattened in PlaNet's (H, W, C) order

    def decode(self, state: RSSMState) -> Tensor:
        """States → reconstructed observations (N, 64, 64, 3) in the preprocessed space."""
        with self._part("decoder"):
            h = self.decoder_in(torch.cat([state.deter, state.stoch], -1))  # (N, 32·depth)
            if self.use_cpu_kernels and h.device.type == "cpu":
                return cpu_kernels.decode(self.decoder, h)
            return self.decoder(h[:, :, None, None]).permute(0, 2, 3, 1)  # (N, 64, 64, 3)

    def reward(self, state: RSSMState) -> Tensor:
        """Predicted reward (N,) for arriving in `state` (reward(s_{t+1}) ≈ r_t)."""
        with self._part("reward"):
            return self.reward_head(torch.cat([state.deter, state.stoch], -1)).squeeze(-1).float()

    def img_step(self, state: RSSMState, action: Tensor, generator: torch.Generator | None = None
                 ) -> tuple[RSSMState, Tensor, Tensor]:
        """One imagined step from the prior: (next state, prior_mean, prior_std), each (N, ·)."""
        deter = self._img_core(state, action)
        mean, std = self._prior_stats(deter)
        return RSSMState(deter, _sample(mean, std, generator)), mean, std

    def obs_step(self, state: RSSMState, action: Tensor, embed: Tensor,
                 generator: torch.Generator | None = None
                 ) -> tuple[RSSMState, tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """One filtering step: (posterior state, (prior_mean, prior_std), (post_mean, post_std))."""
        deter = self._img_core(state, action)
        prior = self._prior_stats(deter)
        mean, std = self._post_stats(deter, embed)
        return RSSMState(deter, _sample(mean, std, generator)), prior, (mean, std)

    # ---- sequences -----------------------------------------------------------------------------
    def forward(self, obs_seq: Tensor, act_seq: Tensor, generator: torch.Generator | None = None
                ) -> dict[str, Tensor]:
        """Filter a sequence: obs (T,B,64,64,3) preprocessed, actions (T,B,A) → dict (see WorldModel).

        Keys: embed (T,B,E); deter (T,B,D); stoch (T,B,S) posterior samples; prior_mean, prior_std,
        post_mean, post_std (T,B,S) fp32; recon (T,B,64,64,3) = decode(s_t); reward (T,B) fp32 =
        reward(s_t) ≈ r_{t-1} (entry 0 has no target); final_state RSSMState of (B,·) = s_{T-1}.
        Equals the loop s_t = obs_step(s_{t-1}, a_{t-1}, encode(o_t)) from initial_state with a_{-1} = 0.
        """
        if obs_seq.dim() != 5 or tuple(obs_seq.shape[2:]) != (64, 64, 3):
            raise ValueError(f"obs_seq must be time-first (T, B, 64, 64, 3), got {tuple(obs_seq.shape)}")
        T, B = obs_seq.shape[:2]
        if act_seq.shape != (T, B, self.action_dim):
            raise ValueError(f"act_seq must be (T, B, A) = ({T}, {B}, {self.action_dim}), got {tuple(act_seq.shape)}")
        S, D = self.stoch_dim, self.deter_dim
        embed = self.encode(obs_seq.reshape(T * B, 64, 64, 3)).reshape(T, B, -1)  # (T, B, E)
        prev_act = torch.cat([torch.zeros_like(act_seq[:1]), act_seq[:-1]], 0)  # a_{t-1}, (T, B, A)
        deter, stoch, post_mean, post_std, state = self._filter(embed, prev_act, generator)
        # The prior is not needed by the recurrence (it continues from posterior samples): run it once.
        prior_mean, prior_std = self._prior_stats(deter)
        flat = RSSMState(deter.reshape(T * B, D), stoch.reshape(T * B, S))
        recon = self.decode(flat).reshape(T, B, 64, 64, 3)
        reward = self.reward(flat).reshape(T, B)
        return {
            "embed": embed, "deter": deter, "stoch": stoch,
            "prior_mean": prior_mean, "prior_std": prior_std,
            "post_mean": post_mean, "post_std": post_std,
            "recon": recon, "reward": reward, "final_state": state,
        }

    def _filter(self, embed: Tensor, prev_act: Tensor, generator: torch.Generator | None
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, RSSMState]:
        """The posterior recurrence over (T, B, ·) embeddings and previous actions (obs_step's math).

        Returns deter (T, B, D), stoch (T, B, S), post_mean, post_std (T, B, S) and the last state.
        """
        T, B = embed.shape[:2]
        S, D = self.stoch_dim, self.deter_dim
        # Split the first layers of transition and posterior into per-input weight blocks so the
        # action and embedding parts run once for all timesteps (same math as Linear on the concat).
        w_img, w_post = self.img_in.weight, self.post_in.weight
        with self._part("transition"):
            act_proj = F.linear(prev_act, w_img[:, S:], self.img_in.bias).float()  # (T, B, H)
        with self._part("posterior"):
            emb_proj = F.linear(embed.float(), w_post[:, D:], self.post_in.bias).float()  # (T, B, H)
        w_img_s, w_post_d = w_img[:, :S].t(), w_post[:, :D].t()

        # The recurrence itself runs in fp32 with autocast off: its (B, 200) matmuls are too small
        # to gain from bf16, and per-step casts would cost more than they save.
        state = self.initial_state(B, embed.device)
        deters, stochs, means, stds = [], [], [], []
        with torch.autocast(embed.device.type, enabled=False):
            for t in range(T):
                x = F.elu(torch.addmm(act_proj[t], state.stoch, w_img_s))
                deter = self.gru(x, state.deter)
                h = F.elu(torch.addmm(emb_proj[t], deter, w_post_d))
                mean, std = self._stats(self.post_head, h)
                state = RSSMState(deter, _sample(mean, std, generator))
                deters.append(deter)
                stochs.append(state.stoch)
                means.append(mean)
                stds.append(std)
        return torch.stack(deters), torch.stack(stochs), torch.stack(means), torch.stack(stds), state
