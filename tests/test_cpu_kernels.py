"""The CPU fast paths (planet_colab.cpu_kernels) against the plain layers and the generic rollout they replace."""

import pytest
import torch

from planet_colab.config import ENCODER_ACTIVATIONS, get_config
from planet_colab.cpu_kernels import _SCRATCH, FastRollout, _elu_, _tanh_
from planet_colab.models import RSSMState, WorldModel, preprocess_obs
from planet_colab.planner import CEMPlanner, imagined_returns


@pytest.mark.parametrize("activation", ENCODER_ACTIVATIONS)
def test_fast_conv_paths_match_the_reference_layers_and_their_gradients(activation):
    # On CPU encode/decode use sub-pixel and matmul forms of the conv layers; they must equal the
    # plain nn.Conv2d / nn.ConvTranspose2d stacks (with the encoder's own activation), gradients included.
    torch.manual_seed(0)
    m = WorldModel(1, get_config("smoke", cnn_depth=8, encoder_activation=activation))
    x = (torch.rand(3, 64, 64, 3) - 0.5).requires_grad_()
    state = RSSMState(torch.randn(3, m.deter_dim), torch.randn(3, m.stoch_dim))
    ref_e = m.encoder(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).flatten(1)
    h = m.decoder_in(torch.cat(state, -1))
    ref_d = m.decoder(h[:, :, None, None]).permute(0, 2, 3, 1)
    new_e, new_d = m.encode(x), m.decode(state)
    torch.testing.assert_close(new_e, ref_e, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new_d, ref_d, rtol=1e-5, atol=1e-6)
    params = [x] + [p for p in m.parameters() if p.requires_grad]
    ref_g = torch.autograd.grad(ref_e.pow(2).sum() + ref_d.pow(2).sum(), params, allow_unused=True)
    new_g = torch.autograd.grad(new_e.pow(2).sum() + new_d.pow(2).sum(), params, allow_unused=True)
    for a, b in zip(ref_g, new_g):
        if a is not None or b is not None:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_world_model_trains_the_same_with_plain_layers_as_with_the_cpu_kernels():
    # Off CPU the model runs its plain layers: the same losses and gradients as the kernels' path.
    torch.manual_seed(0)
    m = WorldModel(2, get_config("smoke", cnn_depth=8))
    g = torch.Generator().manual_seed(0)
    obs = preprocess_obs(torch.rand(4, 3, 64, 64, 3, generator=g), 5, g)
    act = torch.rand(4, 3, 2, generator=g) * 2 - 1
    grads, outs = [], []
    for use_kernels in (True, False):
        m.use_cpu_kernels = use_kernels
        out = m(obs, act, generator=torch.Generator().manual_seed(1))
        loss = (out["recon"] - obs).pow(2).sum() + out["reward"].pow(2).sum() + out["post_mean"].pow(2).sum()
        loss = loss + out["prior_mean"].pow(2).sum()
        grads.append(torch.autograd.grad(loss, list(m.parameters())))
        outs.append(out)
    for key in ("embed", "recon", "reward", "deter", "post_std"):
        torch.testing.assert_close(outs[0][key], outs[1][key], rtol=1e-5, atol=1e-5)
    for fast, plain in zip(*grads):
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def _world_model_and_start(action_dim: int, batch: int, preset: str = "smoke"):
    torch.manual_seed(0)
    model = WorldModel(action_dim, get_config(preset)).eval()
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        obs = torch.rand(1, 64, 64, 3, generator=g) - 0.5
        belief = model.obs_step(model.initial_state(1), torch.zeros(1, action_dim), model.encode(obs), g)[0]
    start = belief._replace(deter=belief.deter.repeat(batch, 1), stoch=belief.stoch.repeat(batch, 1))
    actions = (torch.randn(4, batch, action_dim, generator=g)).clamp(-1, 1)  # (H, B, A)
    return model, belief, start, actions


@pytest.mark.parametrize("action_dim", [1, 3])
def test_fast_rollout_predicts_the_same_returns_as_img_step_and_reward(action_dim):
    model, _, start, actions = _world_model_and_start(action_dim, 64)
    assert FastRollout.supports(model, imagined_returns)
    with torch.inference_mode():
        want = imagined_returns(model, start, actions, torch.Generator().manual_seed(1))
        got = FastRollout(model, start, 4, torch.float32)(actions, torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_bf16_rollout_ranks_candidates_like_fp32():
    model, _, start, actions = _world_model_and_start(1, 400, preset="pendulum")
    with torch.inference_mode():
        exact = FastRollout(model, start, 4, torch.float32)(actions, torch.Generator().manual_seed(1))
        fast = FastRollout(model, start, 4, torch.bfloat16)(actions, torch.Generator().manual_seed(1))
    assert fast.dtype == torch.float32
    best = lambda r: set(r.topk(40).indices.tolist())  # noqa: E731
    assert len(best(exact) & best(fast)) >= 36


def test_world_model_planning_is_batched_bounded_and_the_same_with_either_rollout():
    model, belief, _, _ = _world_model_and_start(2, 1)
    beliefs = belief._replace(deter=belief.deter.repeat(3, 1), stoch=belief.stoch.repeat(3, 1))
    planner = CEMPlanner.from_config(get_config("smoke"), 2)
    fast = planner(model, beliefs, torch.Generator().manual_seed(0))
    planner.fast_rollout = False
    generic = planner(model, beliefs, torch.Generator().manual_seed(0))
    assert fast.shape == (3, 2) and fast.abs().max() <= 1
    torch.testing.assert_close(fast, generic, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rollout_tanh_and_elu_equal_torchs_own_for_every_16_bit_value(dtype):
    every = torch.arange(-2 ** 15, 2 ** 15, dtype=torch.int32).to(torch.int16).view(dtype)
    every = every[~every.isnan()]  # NaN payloads aside, every value of the dtype (infinities included)
    tanh = _tanh_(every.clone(), torch.empty(every.shape))
    elu = _elu_(every.clone(), torch.empty(every.shape, dtype=torch.int32))
    assert tanh.dtype == elu.dtype == dtype
    # bit for bit, signed zeros included
    assert torch.equal(tanh.view(torch.int16), torch.tanh(every).view(torch.int16))
    assert torch.equal(elu.view(torch.int16), torch.nn.functional.elu(every).view(torch.int16))


def test_rollouts_alive_at_once_never_share_buffers_and_a_freed_ones_are_reused():
    model, _, start, actions = _world_model_and_start(2, 32)
    with torch.inference_mode():
        alone = FastRollout(model, start, 4, torch.bfloat16)(actions, torch.Generator().manual_seed(1))
        first = FastRollout(model, start, 4, torch.bfloat16)
        other = start._replace(deter=start.deter.flip(0), stoch=start.stoch.flip(0))
        second = FastRollout(model, other, 4, torch.bfloat16)  # same shapes, alive at the same time
        assert first.buf.data_ptr() != second.buf.data_ptr()
        second(actions, torch.Generator().manual_seed(2))
        torch.testing.assert_close(first(actions, torch.Generator().manual_seed(1)), alone, rtol=0, atol=0)
        kept = second.buf.data_ptr()
        del second
        assert FastRollout(model, start, 4, torch.bfloat16).buf.data_ptr() == kept
    with torch.no_grad():  # buffers made in inference mode stay writable outside it
        again = FastRollout(model, start, 4, torch.bfloat16)(actions, torch.Generator().manual_seed(1))
    assert torch.equal(again, alone)


def test_a_rollout_never_reads_what_its_reused_buffers_held_before():
    """bf16 GEMMs on column slices may read past the slice (oneDNN, AMX): a NaN left in a reused buffer
    must not reach the returns. Every float buffer of the pooled set is filled with NaN first."""
    model, _, start, actions = _world_model_and_start(2, 32)
    with torch.inference_mode():
        clean = FastRollout(model, start, 4, torch.bfloat16)(actions, torch.Generator().manual_seed(1))
        # The rollout is freed: its set is the pool's newest. Every float buffer in it, whatever the
        # rollout names them, is filled with NaN.
        for tensor in next(reversed(_SCRATCH.free.values())).values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
        again = FastRollout(model, start, 4, torch.bfloat16)
        assert again.buf.isnan().any()  # the NaN-filled set was taken (its constant and start columns rewritten)
        torch.testing.assert_close(again(actions, torch.Generator().manual_seed(1)), clean, rtol=0, atol=0)
