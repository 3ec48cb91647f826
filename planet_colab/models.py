"""The PlaNet world model: conv encoder, RSSM (GRU deterministic + Gaussian stochastic state),
transposed-conv decoder and reward head (Hafner et al., 2019), plus observation preprocessing.

Sizes come from `Config` (cnn_depth, deter_dim, stoch_dim, hidden_dim, min_std). Tensor math only:
nothing here touches files. Speed (CPU, measured on the 2-core AVX512-BF16 dev box; 1-thread CPU
time per B16×L25 step 2.36 s fp32 → 0.65 s bf16): the images of all T·B timesteps go through encoder
and decoder in one call per layer, channels-last (an NHWC image permuted to NCHW already is
channels-last: no copy), in the autocast dtype, through `_ConvFn`, which calls oneDNN's backward
directly (bias gradients summed outside its weight-gradient kernel, 10× cheaper); transposed convs
whose oneDNN forward is slow run as the equivalent sub-pixel conv; the first deconv (1×1 input) is a
matmul and the last encoder conv (2×2 output) im2col + matmul. The posterior's embedding projection
and the transition's action projection are precomputed for all timesteps in one matmul each; the
recurrence runs in fp32 (its (B, 200) matmuls gain nothing from bf16); the prior's hidden layer and
head (not needed by the recurrence, which continues from posterior samples) run once after the loop.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from planet_colab.config import Config


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


def _compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype autocast would run convolutions in on `device` (fp32 when autocast is off)."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return torch.float32


def _cast_contiguous(t: Tensor, dtype: torch.dtype) -> Tensor:
    """`t` as a contiguous tensor of `dtype` in one copy (`.to` alone keeps a same-dtype view as is)."""
    return t.contiguous() if t.dtype == dtype else t.to(dtype, memory_format=torch.contiguous_format)


def _subpixel_weight(w: Tensor) -> Tensor:
    """ConvTranspose2d weight (Cin, Cout, k, k), k ∈ {5, 6}, stride 2 → an equivalent conv weight (4·Cout, Cin, 3, 3).

    Output pixel (2m+a, 2n+b) of the transposed conv only sees taps k ≡ a, b (mod 2): each of the
    4 phases (a, b) is a plain 3×3 conv of the input padded by 2, so one conv with 4·Cout
    channels (ordered a, b, c) followed by depth-to-space computes it (k = 5 is padded to 6 with zeros).
    """
    cin, cout, k, _ = w.shape
    if k == 5:
        w = F.pad(w, (0, 1, 0, 1))
    w = w.reshape(cin, cout, 3, 2, 3, 2).flip(2, 4)  # (cin, c, jr, a, jc, b), taps reversed
    return w.permute(3, 5, 1, 0, 2, 4).reshape(4 * cout, cin, 3, 3)


class _ConvFn(torch.autograd.Function):
    """conv2d / conv_transpose2d (stride 2, no padding) with layouts chosen for CPU oneDNN speed.

    Runs in x's dtype on channels-last tensors; the backward calls convolution_backward directly
    with the weight already cast and laid out (autocast's path re-orders per call and is ~2× slower
    here). A transposed conv may run its forward as the equivalent sub-pixel conv (much faster for
    oneDNN when the input is tiny or the output has few channels); its backward stays the native one.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, transposed: bool, subpixel: bool) -> Tensor:
        w = weight.to(x.dtype).contiguous(memory_format=torch.channels_last)
        b = bias.to(x.dtype)
        ctx.save_for_backward(x, w)
        ctx.transposed = transposed
        if not transposed:
            return F.conv2d(x, w, b, stride=2)
        if not subpixel:
            return F.conv_transpose2d(x, w, b, stride=2)
        n, _, h, wd = x.shape
        k, cout = weight.shape[-1], weight.shape[1]
        ws = _subpixel_weight(w)
        bs = b.repeat(4)
        extra = (-4 * cout) % 16  # oneDNN is slow for a handful of output channels
        if extra:
            ws, bs = F.pad(ws, (0, 0, 0, 0, 0, 0, 0, extra)), F.pad(bs, (0, extra))
        y = F.conv2d(x, ws.contiguous(memory_format=torch.channels_last), bs, padding=2)
        y = y.permute(0, 2, 3, 1)[..., : 4 * cout]  # (N, H+2, W+2, 4·Cout)
        y = y.reshape(n, h + 2, wd + 2, 2, 2, cout).transpose(2, 3).reshape(n, 2 * h + 4, 2 * wd + 4, cout)
        if k == 5:
            y = y[:, : 2 * h + 3, : 2 * wd + 3]
        return y.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)  # (N, Cout, H', W')

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, w = ctx.saved_tensors
        gy = gy.to(x.dtype).contiguous(memory_format=torch.channels_last)
        gx, gw, _ = torch.ops.aten.convolution_backward(
            gy, x, w, None, [2, 2], [0, 0], [1, 1], ctx.transposed, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        # The bias gradient separately: inside oneDNN's weight-gradient kernel it costs ~10× more.
        gb = _bias_grad(gy, (0, 2, 3)) if ctx.needs_input_grad[2] else None
        return gx, (gw.float() if gw is not None else None), gb, None, None


class _PatchConvFn(torch.autograd.Function):
    """Stride-2 conv (no padding) as im2col + one matmul each way: faster than oneDNN when the
    output is only a few pixels (the last encoder layer: 6×6 → 2×2), where its kernels idle."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        xh = x.permute(0, 2, 3, 1)  # (N, H, W, Cin), contiguous for channels-last x
        n, h, w, _ = xh.shape
        cout, k = weight.shape[0], weight.shape[-1]
        ho, wo = (h - k) // 2 + 1, (w - k) // 2 + 1
        wm = _cast_contiguous(weight.permute(0, 2, 3, 1), x.dtype).view(cout, -1)  # (Cout, k·k·Cin)
        ctx.save_for_backward(x, wm)
        y = torch.addmm(bias.to(x.dtype), _im2col(xh, k, ho, wo), wm.t())  # (N·ho·wo, Cout)
        return y.view(n, ho, wo, cout).permute(0, 3, 1, 2)  # channels-last NCHW

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, wm = ctx.saved_tensors
        xh = x.permute(0, 2, 3, 1)
        n, h, w, cin = xh.shape
        cout, k = wm.shape[0], int(round((wm.shape[1] // cin) ** 0.5))
        gy2 = gy.to(x.dtype).permute(0, 2, 3, 1).reshape(-1, cout)  # (N·ho·wo, Cout)
        ho, wo = gy.shape[2], gy.shape[3]
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _col2im(gy2 @ wm, n, h, w, k, ho, wo).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            gw = (gy2.t() @ _im2col(xh, k, ho, wo)).view(cout, k, k, cin).permute(0, 3, 1, 2)
            gw = _cast_contiguous(gw, torch.float32)
        if ctx.needs_input_grad[2]:
            gb = _bias_grad(gy2, (0,))
        return gx, gw, gb


def _bias_grad(gy: Tensor, dims: tuple[int, ...]) -> Tensor:
    """fp32 sum of `gy` over `dims`. A bf16 sum accumulates in fp32 internally and asking for an
    fp32 result would copy all of gy first (25× slower); fp16 sums could overflow, so they do."""
    if gy.dtype == torch.float16:
        return gy.sum(dims, dtype=torch.float32)
    return gy.sum(dims).float()


def _im2col(x: Tensor, k: int, ho: int, wo: int) -> Tensor:
    """NHWC x → (N·ho·wo, k·k·C) patches of stride-2 k×k windows (one copy)."""
    n, _, _, c = x.shape
    sn, sh, sw, sc = x.stride()
    return x.as_strided((n, ho, wo, k, k, c), (sn, 2 * sh, 2 * sw, sh, sw, sc)).reshape(n * ho * wo, k * k * c)


def _col2im(cols: Tensor, n: int, h: int, w: int, k: int, ho: int, wo: int) -> Tensor:
    """Adjoint of `_im2col`: (N·ho·wo, k·k·C) → NHWC (N, h, w, C), overlapping windows summed."""
    patches = cols.view(n, ho, wo, k, k, -1)
    out = cols.new_zeros(n, h, w, patches.shape[-1])
    for i in range(k):
        for j in range(k):
            out[:, i:i + 2 * ho - 1:2, j:j + 2 * wo - 1:2] += patches[:, :, :, i, j]
    return out


def _conv(x: Tensor, layer: nn.Conv2d | nn.ConvTranspose2d, subpixel: bool = False) -> Tensor:
    """Apply a stride-2 conv layer (x channels-last in the compute dtype) on its fastest path."""
    if isinstance(layer, nn.Conv2d) and (x.shape[-1] - layer.kernel_size[0]) // 2 + 1 <= 2:
        return _PatchConvFn.apply(x, layer.weight, layer.bias)
    return _ConvFn.apply(x, layer.weight, layer.bias, isinstance(layer, nn.ConvTranspose2d), subpixel)


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
        if not isinstance(action_dim, int) or isinstance(action_dim, bool) or action_dim <= 0:
            raise ValueError(f"action_dim must be a positive integer, got {action_dim!r}")
        self.config = config
        self.action_dim = action_dim
        d, D, S, H = config.cnn_depth, config.deter_dim, config.stoch_dim, config.hidden_dim
        self.deter_dim, self.stoch_dim, self.hidden_dim = D, S, H
        self.embed_dim = config.embed_dim
        self.min_std = float(config.min_std)

        # 64 → 31 → 14 → 6 → 2; 8d channels × 2 × 2 = 32d = embed_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(3, d, 4, 2), nn.ReLU(),
            nn.Conv2d(d, 2 * d, 4, 2), nn.ReLU(),
            nn.Conv2d(2 * d, 4 * d, 4, 2), nn.ReLU(),
            nn.Conv2d(4 * d, 8 * d, 4, 2), nn.ReLU(),
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

    # ---- helpers -------------------------------------------------------------------------------
    def _stats(self, head: nn.Linear, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Gaussian (mean, std) in fp32 from a head; std = softplus(x) + min_std."""
        mean, raw = head(hidden).float().chunk(2, dim=-1)
        return mean, F.softplus(raw) + self.min_std

    def _img_core(self, state: RSSMState, action: Tensor) -> Tensor:
        """The deterministic part of a transition: the next GRU state (N, D)."""
        x = F.elu(self.img_in(torch.cat([state.stoch, action.to(state.stoch.dtype)], dim=-1)))
        return self.gru(x, state.deter.to(x.dtype)).float()

    def _post_stats(self, deter: Tensor, embed: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior (mean, std) from the deterministic state and an observation embedding."""
        return self._stats(self.post_head, F.elu(self.post_in(torch.cat([deter, embed.to(deter.dtype)], -1))))

    def _prior_stats(self, deter: Tensor) -> tuple[Tensor, Tensor]:
        """Prior (mean, std) from the deterministic state."""
        return self._stats(self.prior_head, F.elu(self.img_out(deter)))

    # ---- public single-step API ----------------------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> RSSMState:
        """All-zero state for `batch_size` sequences (start of an episode)."""
        device = device if device is not None else self.img_in.weight.device
        return RSSMState(torch.zeros(batch_size, self.deter_dim, device=device),
                         torch.zeros(batch_size, self.stoch_dim, device=device))

    def encode(self, obs_pre: Tensor) -> Tensor:
        """Preprocessed observations (N, 64, 64, 3) → embeddings (N, embed_dim)."""
        dtype = _compute_dtype(obs_pre.device)
        x = obs_pre.to(dtype).permute(0, 3, 1, 2)  # (N, 3, 64, 64), channels-last strides: no copy
        for conv in self.encoder[::2]:
            x = torch.relu(_conv(x, conv))
        return x.permute(0, 2, 3, 1).flatten(1)  # (N, 32·depth), flattened in PlaNet's (H, W, C) order

    def decode(self, state: RSSMState) -> Tensor:
        """States → reconstructed observations (N, 64, 64, 3) in the preprocessed space."""
        dtype = _compute_dtype(state.deter.device)
        n = state.deter.shape[0]
        x = self.decoder_in(torch.cat([state.deter, state.stoch], -1)).to(dtype)  # (N, 32·depth)
        # The first transposed conv sees a 1×1 input: it is a matmul onto its 5×5×C output.
        first = self.decoder[0]
        w = _cast_contiguous(first.weight.permute(0, 2, 3, 1), dtype).view(first.in_channels, -1)  # (32·depth, 5·5·C)
        x = torch.relu((x @ w).view(n, 5, 5, -1) + first.bias.to(dtype))  # (N, 5, 5, 4·depth)
        x = x.permute(0, 3, 1, 2)  # channels-last NCHW view
        x = torch.relu(_conv(x, self.decoder[2], subpixel=True))  # (N, 2·depth, 13, 13)
        x = torch.relu(_conv(x, self.decoder[4]))  # (N, depth, 30, 30)
        x = _conv(x, self.decoder[6], subpixel=True)  # (N, 3, 64, 64)
        return x.permute(0, 2, 3, 1)  # (N, 64, 64, 3)

    def reward(self, state: RSSMState) -> Tensor:
        """Predicted reward (N,) for arriving in `state` (reward(s_{t+1}) ≈ r_t)."""
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

        # Split the first layers of transition and posterior into per-input weight blocks so the
        # action and embedding parts run once for all timesteps (same math as Linear on the concat).
        w_img, w_post = self.img_in.weight, self.post_in.weight
        prev_act = torch.cat([torch.zeros_like(act_seq[:1]), act_seq[:-1]], 0)  # a_{t-1}, (T, B, A)
        act_proj = F.linear(prev_act, w_img[:, S:], self.img_in.bias).float()  # (T, B, H)
        emb_proj = F.linear(embed, w_post[:, D:], self.post_in.bias).float()  # (T, B, H)
        w_img_s, w_post_d = w_img[:, :S].t(), w_post[:, :D].t()

        # The recurrence itself runs in fp32 with autocast off: its (B, 200) matmuls are too small
        # to gain from bf16, and per-step casts would cost more than they save.
        state = self.initial_state(B, obs_seq.device)
        deters, stochs, means, stds = [], [], [], []
        with torch.autocast(obs_seq.device.type, enabled=False):
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
        deter = torch.stack(deters)  # (T, B, D)
        stoch = torch.stack(stochs)  # (T, B, S)
        prior_mean, prior_std = self._prior_stats(deter)
        flat = RSSMState(deter.reshape(T * B, D), stoch.reshape(T * B, S))
        recon = self.decode(flat).reshape(T, B, 64, 64, 3)
        reward = self.reward(flat).reshape(T, B)
        return {
            "embed": embed, "deter": deter, "stoch": stoch,
            "prior_mean": prior_mean, "prior_std": prior_std,
            "post_mean": torch.stack(means), "post_std": torch.stack(stds),
            "recon": recon, "reward": reward, "final_state": state,
        }
