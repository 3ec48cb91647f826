"""CPU fast paths: WorldModel's conv stacks and the CEM planner's imagined rollout, same math as the
plain layers, rearranged for oneDNN / MKL on CPU.

Where they run: `WorldModel.encode`/`decode` call `encode`/`decode` below for CPU tensors, and
`CEMPlanner` uses `FastRollout` for CPU beliefs. On CUDA (and any other device) the model runs its
plain nn.Conv2d / nn.ConvTranspose2d stacks and the planner its generic `imagined_returns`: these
kernels were tuned for oneDNN and have never been measured on a GPU (none was available when they
were split out), so they stay off there until a measurement says otherwise. The parameters are the
plain layers' either way, so checkpoints do not depend on the path. tests/test_cpu_kernels.py checks
every path against the plain layers (values and gradients) and the generic rollout.

Why each conv path. fp32 on this project's 2-core AMD EPYC (AVX2, no bf16), 1 thread, process CPU
ms of forward + backward, N = 400 images (B16×L25), depth 32, best of 9, machine load ≈ 7; "plain"
is the nn layer on channels-last input (its fastest layout; NCHW is slower still):

    layer                  path here                                  here  plain
    encoder 64→31          `_ConvFn` (bias gradient outside oneDNN)    216    283
    encoder 31→14          `_ConvFn`                                   313    298  (a tie: 308 / 295
    encoder 14→6           `_ConvFn`                                   244    204   and 193 / 194 when
                                                                                     re-measured interleaved)
    encoder 6→2            `_PatchConvFn` (im2col + matmul)             94    154
    decoder 1→5            one matmul (the input is 1×1)               131   1081
    decoder 5→13  (k=5)    `_ConvFn`, sub-pixel forward                274    267 (native forward 256)
    decoder 13→30 (k=6)    `_ConvFn`, native forward                   563    675 (sub-pixel 593)
    decoder 30→64 (k=6)    `_ConvFn`, sub-pixel forward                166    274

A whole B16×L25 train step (process CPU time, the two alternating in one process; `bench train
--plain-layers` runs the plain one): 2.03 s with these paths, 3.42 s with the plain layers. The
paths were first chosen on a 2-core AVX512-BF16 box, where bf16 autocast took that step from 2.36 s
(fp32) to 0.65 s. In fp32 here the 5→13 deconv's native forward measured ~10% faster than its
sub-pixel one (interleaved: 258 vs 285 ms), about 1% of a step; it stays sub-pixel because a changed
path changes the rounding, and a CPU run must keep reproducing its checkpoints bit for bit.
Re-measure before changing a path, and change one only when the gain is worth new numerics.
"""

from __future__ import annotations

import functools
import weakref
from collections import OrderedDict
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# ---- the conv stacks ---------------------------------------------------------------------------
def encode(encoder: nn.Sequential, obs_pre: Tensor) -> Tensor:
    """WorldModel's encoder (conv, activation)×4 on (N, 64, 64, 3) → (N, 32·depth) flattened in (H, W, C) order."""
    dtype = _compute_dtype(obs_pre.device)
    x = obs_pre.to(dtype).permute(0, 3, 1, 2)  # (N, 3, 64, 64), channels-last strides: no copy
    for conv, act in zip(encoder[::2], encoder[1::2]):
        x = act(_conv(x, conv))
    return x.permute(0, 2, 3, 1).flatten(1)


def decode(decoder: nn.Sequential, h: Tensor) -> Tensor:
    """WorldModel's decoder (deconv, ReLU)×3 + deconv on decoder_in's output (N, 32·depth) → (N, 64, 64, 3)."""
    dtype = _compute_dtype(h.device)
    n, x = h.shape[0], h.to(dtype)
    # The first transposed conv sees a 1×1 input: it is a matmul onto its 5×5×C output.
    first = decoder[0]
    w = _cast_contiguous(first.weight.permute(0, 2, 3, 1), dtype).view(first.in_channels, -1)  # (32·depth, 5·5·C)
    x = torch.relu((x @ w).view(n, 5, 5, -1) + first.bias.to(dtype))  # (N, 5, 5, 4·depth)
    x = x.permute(0, 3, 1, 2)  # channels-last NCHW view
    x = torch.relu(_conv(x, decoder[2], subpixel=True))  # (N, 2·depth, 13, 13)
    x = torch.relu(_conv(x, decoder[4]))  # (N, depth, 30, 30)
    x = _conv(x, decoder[6], subpixel=True)  # (N, 3, 64, 64)
    return x.permute(0, 2, 3, 1)  # (N, 64, 64, 3)


def _compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype autocast would run convolutions in on `device` (fp32 when autocast is off)."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return torch.float32


def _cast_contiguous(t: Tensor, dtype: torch.dtype) -> Tensor:
    """`t` as a contiguous tensor of `dtype` in one copy (`.to` alone keeps a same-dtype view as is)."""
    return t.contiguous() if t.dtype == dtype else t.to(dtype, memory_format=torch.contiguous_format)


def _conv(x: Tensor, layer: nn.Conv2d | nn.ConvTranspose2d, subpixel: bool = False) -> Tensor:
    """Apply a stride-2 conv layer (x channels-last in the compute dtype) on its fastest path."""
    if isinstance(layer, nn.Conv2d) and (x.shape[-1] - layer.kernel_size[0]) // 2 + 1 <= 2:
        return _PatchConvFn.apply(x, layer.weight, layer.bias)
    return _ConvFn.apply(x, layer.weight, layer.bias, isinstance(layer, nn.ConvTranspose2d), subpixel)


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


# ---- the planner's rollout ---------------------------------------------------------------------
class FastRollout:
    """The planner's `imagined_returns` for planet_colab's WorldModel, rewritten for CPU speed from its submodules.

    Same math as img_step + reward (checked against a reference once per model class, else unused):
    the rollout is GEMM-bound (GRU 200×600 over all candidates) plus many small elementwise calls,
    so it keeps every step's [action | stoch | deter | GRU input] in one preallocated buffer (no
    cat, no per-step allocation of states, biases folded into the matmuls), fuses the r/z gates of
    both GRU inputs into one matmul, casts weights to the compute dtype once per plan instead of
    once per call, and sums the reward head's last (linear) layer over time before applying it.
    fp32 on the 2-core AVX2 EPYC, 1 thread, process CPU ms per CEM action, alternating in one
    process (median / best of 10): pendulum preset (500 × 5) 627 / 552 here, 742 / 602 generic;
    paper settings (1000 × 10) 2458 / 2324 here, 2494 / 2305 generic. So in fp32 it is faster at
    the pendulum preset and ties at the paper's settings (its larger gains were measured in bf16,
    where it casts the weights once per plan). Kept: never slower, and the episodes the CPU runs
    collected were planned with its numbers.

    Three later changes return bit for bit what they replace (checked on fp32, bf16 and fp16 rollouts
    of the cheetah_run and cartpole_swingup models, and for every 16-bit value in
    tests/test_cpu_kernels.py): (1) the GRU's tanh runs on an fp32 copy: PyTorch's bf16 tanh computes
    in fp32 and rounds, unvectorised (150 µs for (500, 200) against fp32's 26 µs), so the fp32 result
    rounded back is the same value, sooner; (2) the ELUs are looked up in a table of F.elu's own
    16-bit results (`_elu_`); (3) the buffers come from `_SCRATCH`, reused across plans: a fresh 6 MB
    buffer page-faults on its first touch in every plan. On the 2-core AMX-BF16 Xeon, bf16, 1 thread,
    a CEM 500 × 5 plan's rollouts, old and new alternating in one process (best / median of 8,
    process CPU ms): cheetah_run 110.9 / 115.1 → 99.5 / 102.0, cartpole_swingup 113.6 / 116.9 →
    102.2 / 105.1: 10–11% less.
    """

    _verified: dict[type, bool] = {}

    @classmethod
    def supports(cls, model: Any, reference: Callable[..., Tensor]) -> bool:
        """Whether `model` has the WorldModel layout this rollout re-implements and matches
        `reference(model, state, actions, generator) -> returns` on it numerically."""
        kind = type(model)
        if kind not in cls._verified:
            cls._verified[kind] = cls._has_layout(model) and cls._matches(model, reference)
        return cls._verified[kind]

    @staticmethod
    def _has_layout(model: Any) -> bool:
        try:
            head = model.reward_head
            return (isinstance(model.img_in, nn.Linear) and isinstance(model.gru, nn.GRUCell)
                    and isinstance(model.img_out, nn.Linear) and isinstance(model.prior_head, nn.Linear)
                    and len(head) == 5 and all(isinstance(head[i], nn.Linear) for i in (0, 2, 4))
                    and all(isinstance(head[i], nn.ReLU) for i in (1, 3))
                    and isinstance(model.min_std, float))
        except (AttributeError, TypeError):
            return False

    @classmethod
    def _matches(cls, model: Any, reference: Callable[..., Tensor]) -> bool:
        """Compare with `reference` on a few random states (fp32)."""
        device = model.img_in.weight.device
        with torch.inference_mode():
            g = torch.Generator(device=device).manual_seed(0)
            B = 5
            start = model.initial_state(B, device=device)
            start = start._replace(deter=torch.randn(start.deter.shape, generator=g, device=device),
                                   stoch=torch.randn(start.stoch.shape, generator=g, device=device))
            actions = torch.rand(3, B, model.action_dim, generator=g, device=device) * 2 - 1
            want = reference(model, start, actions, torch.Generator(device=device).manual_seed(1))
            got = cls(model, start, 3, torch.float32)(actions, torch.Generator(device=device).manual_seed(1))
        ok = torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()) + 1e-5)
        if not ok:
            import warnings
            warnings.warn("CEM fast rollout disagrees with the model's img_step/reward; planning with the "
                          "slower generic path (update planet_colab/cpu_kernels.py's FastRollout).", RuntimeWarning)
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
        f32 = torch.float32
        shapes = {"buf": ((horizon + 1, B, A + S + D + Hd + 2), dtype), "t_x": ((B, Hd), dtype),
                  "t_rz": ((B, 2 * D), dtype), "t_xn": ((B, D), dtype), "t_hn": ((B, D), dtype),
                  "t_hid": ((B, Hd), dtype), "t_stats": ((B, 2 * S), dtype), "t_n32": ((B, D), f32),
                  "t_mean32": ((B, S), f32), "t_std32": ((B, S), f32), "t_eps": ((B, S), f32),
                  "t_hidden1": ((horizon * B, Hd), dtype), "t_hidden2": ((horizon * B, Hd), dtype),
                  "t_index": ((B * Hd,), torch.int32)}
        # Temporaries reused by every step, iteration and plan of this shape. Matmul outputs stay
        # contiguous: MKL's fp32 GEMM is up to 2× slower writing into a strided view.
        scratch = _SCRATCH.take(device, shapes)
        weakref.finalize(self, _SCRATCH.give, device, shapes, scratch)
        for name, tensor in scratch.items():
            setattr(self, name, tensor)
        self.buf[:, :, self.o] = 1
        self.buf[:, :, -1] = 1
        # A bf16 GEMM on a column slice may read past the slice's last column (oneDNN on this AMX CPU
        # does for some shapes, e.g. K = 33 at 32+ rows) and multiply it by zero padding: finite values
        # there change nothing, a NaN or Inf left by the buffer's earlier use poisons the product. So
        # what a step reads beside its slices before writing it is made finite: the GRU input x of each
        # imagined state (written one step after the state's deter is read) and the last state's
        # action (never written).
        self.buf[1:, :, self.o + 1 + D:-1] = 0
        self.buf[horizon, :, :A] = 0
        self.buf[0, :, A:A + S] = start.stoch
        self.buf[0, :, self.o + 1:self.o + 1 + D] = start.deter

        def w(*blocks: Tensor) -> Tensor:
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

    def __call__(self, actions: Tensor, generator: torch.Generator | None) -> Tensor:
        """Predicted returns (B,) fp32 of action sequences (H, B, A)."""
        A, S, D, H, B, o, buf = self.A, self.S, self.D, self.H, self.B, self.o, self.buf
        same_device = generator is None or generator.device == buf.device
        buf[:H, :, :A] = actions
        for t in range(H):
            cur, nxt = buf[t], buf[t + 1]
            cur[:, o + 1 + D:-1] = _elu_(torch.mm(cur[:, :o + 1], self.w_in, out=self.t_x), self.t_index)
            rz = torch.mm(cur[:, o:-1], self.w_rz, out=self.t_rz).sigmoid_()  # (B, 2D)
            n = torch.mm(cur[:, o + 1 + D:], self.w_xn, out=self.t_xn)
            n = _tanh_(n.addcmul_(rz[:, :D], torch.mm(cur[:, o:o + 1 + D], self.w_hn, out=self.t_hn)), self.t_n32)
            torch.lerp(n, cur[:, o + 1:o + 1 + D], rz[:, D:], out=nxt[:, o + 1:o + 1 + D])  # (1 - z)·n + z·h
            hid = _elu_(torch.mm(nxt[:, o:o + 1 + D], self.w_out, out=self.t_hid), self.t_index)
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


@functools.lru_cache(maxsize=None)
def _elu_table(dtype: torch.dtype) -> Tensor:
    """F.elu of every value of a 16-bit float dtype, at the index of its bit pattern read as unsigned."""
    with torch.inference_mode(False):
        return F.elu(torch.arange(2 ** 16, dtype=torch.int32).to(torch.int16).view(dtype))


def _elu_(x: Tensor, index: Tensor) -> Tensor:
    """ELU of contiguous `x` in place; bf16/fp16 looked up in F.elu's own table (`index`: int32, x.numel()).

    PyTorch's ELU runs expm1 on every element (~120 µs for (500, 200), in fp32 as in bf16); a 16-bit
    input has only 65536 values, so a gather from a 128 KB table gives the same bits in half the time.
    """
    if x.element_size() != 2:
        return F.elu_(x)
    flat = x.view(-1)
    index.copy_(flat.view(torch.int16)).bitwise_and_(0xFFFF)  # the bit pattern, 0 … 65535
    torch.index_select(_elu_table(x.dtype), 0, index, out=flat)
    return x


def _tanh_(n: Tensor, scratch32: Tensor) -> Tensor:
    """tanh of `n` in place; bf16/fp16 through `scratch32` (fp32, n's shape): the same rounded values, sooner."""
    if n.dtype == torch.float32:
        return n.tanh_()
    return n.copy_(torch.tanh(scratch32.copy_(n), out=scratch32))


class _ScratchPool:
    """FastRollout's buffers, kept between plans by shape: CPU tensors of megabytes are not cached by
    PyTorch's allocator, and fresh pages cost a page fault each on their first touch, every plan.

    A rollout takes a set and gives it back when it is freed (weakref.finalize), so two rollouts alive
    at once never share one; at most `keep` shapes are kept (the collect and evaluate shapes of a run).
    """

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self.free: OrderedDict[tuple, dict[str, Tensor]] = OrderedDict()

    @staticmethod
    def _key(device: torch.device, shapes: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> tuple:
        return (str(device), tuple(sorted((name, shape, str(dtype)) for name, (shape, dtype) in shapes.items())))

    def take(self, device: torch.device, shapes: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> dict[str, Tensor]:
        """A free set of these shapes, else a new one (uninitialised)."""
        kept = self.free.pop(self._key(device, shapes), None)
        if kept is not None:
            return kept
        with torch.inference_mode(False):  # plain tensors: writable in and out of inference mode
            return {name: torch.empty(shape, device=device, dtype=dtype) for name, (shape, dtype) in shapes.items()}

    def give(self, device: torch.device, shapes: dict[str, tuple[tuple[int, ...], torch.dtype]],
             tensors: dict[str, Tensor]) -> None:
        """Keep `tensors` for the next rollout of these shapes, dropping the least recently used shape."""
        key = self._key(device, shapes)
        self.free[key] = tensors
        self.free.move_to_end(key)
        while len(self.free) > self.keep:
            self.free.popitem(last=False)


_SCRATCH = _ScratchPool()
