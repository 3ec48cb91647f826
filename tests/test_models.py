"""WorldModel: shapes, the documented time alignment, single-step API and preprocessing."""

import pytest
import torch

from planet_colab.config import get_config
from planet_colab.models import RSSMState, WorldModel, preprocess_obs

A = 2


@pytest.fixture(scope="module")
def cfg():
    return get_config("smoke")


@pytest.fixture(scope="module")
def model(cfg):
    torch.manual_seed(0)
    return WorldModel(A, cfg).eval()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(T=5, B=3, seed=0):
    g = gen(seed)
    obs = preprocess_obs(torch.rand(T, B, 64, 64, 3, generator=g), 5, g)
    return obs, torch.rand(T, B, A, generator=g) * 2 - 1


def test_forward_returns_every_tensor_with_time_first_shapes(model, cfg):
    T, B = 5, 3
    obs, act = batch(T, B)
    out = model(obs, act, generator=gen())
    S, D, E = cfg.stoch_dim, cfg.deter_dim, cfg.embed_dim
    expected = {"embed": (T, B, E), "deter": (T, B, D), "stoch": (T, B, S), "prior_mean": (T, B, S),
                "prior_std": (T, B, S), "post_mean": (T, B, S), "post_std": (T, B, S),
                "recon": (T, B, 64, 64, 3), "reward": (T, B)}
    for key, shape in expected.items():
        assert tuple(out[key].shape) == shape, key
        assert torch.isfinite(out[key]).all(), key
    assert isinstance(out["final_state"], RSSMState)
    assert torch.equal(out["final_state"].deter, out["deter"][-1])
    assert (out["prior_std"] >= cfg.min_std).all() and (out["post_std"] >= cfg.min_std).all()


def test_paper_sizes_give_1024_embedding_and_64x64_reconstruction():
    m = WorldModel(1, get_config("pendulum"))
    emb = m.encode(torch.zeros(2, 64, 64, 3))
    assert emb.shape == (2, 1024)
    assert m.decode(m.initial_state(2)).shape == (2, 64, 64, 3)


def test_forward_equals_the_obs_step_loop_of_the_docstring(model):
    T, B = 5, 3
    obs, act = batch(T, B)
    out = model(obs, act, generator=gen(7))
    g = gen(7)
    state, prev_action = model.initial_state(B), torch.zeros(B, A)
    for t in range(T):
        state, (pm, ps), (qm, qs) = model.obs_step(state, prev_action, model.encode(obs[t]), generator=g)
        prev_action = act[t]
        torch.testing.assert_close(state.deter, out["deter"][t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(state.stoch, out["stoch"][t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pm, out["prior_mean"][t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(qs, out["post_std"][t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.reward(state), out["reward"][t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.decode(state), out["recon"][t], rtol=1e-4, atol=1e-5)


def test_reward_at_t_depends_only_on_actions_before_t(model):
    T, B, t0 = 6, 2, 2
    obs, act = batch(T, B)
    base = model(obs, act, generator=gen(1))
    act2 = act.clone()
    act2[t0] += 0.7  # a_{t0} first feeds s_{t0+1}
    moved = model(obs, act2, generator=gen(1))
    assert torch.equal(base["reward"][: t0 + 1], moved["reward"][: t0 + 1])
    assert torch.equal(base["deter"][: t0 + 1], moved["deter"][: t0 + 1])
    assert not torch.allclose(base["reward"][t0 + 1], moved["reward"][t0 + 1])
    # The last action is never used: nothing comes after it.
    act3 = act.clone()
    act3[-1] = 5.0
    torch.testing.assert_close(model(obs, act3, generator=gen(1))["reward"], base["reward"], rtol=0, atol=0)


def test_img_step_samples_from_the_prior(model, cfg):
    state = model.initial_state(4)
    nxt, mean, std = model.img_step(state, torch.zeros(4, A), generator=gen())
    assert nxt.deter.shape == (4, cfg.deter_dim) and nxt.stoch.shape == (4, cfg.stoch_dim)
    _, (pm, ps), _ = model.obs_step(state, torch.zeros(4, A), torch.zeros(4, cfg.embed_dim))
    torch.testing.assert_close(mean, pm)
    torch.testing.assert_close(std, ps)
    again, _, _ = model.img_step(state, torch.zeros(4, A), generator=gen())
    assert torch.equal(again.stoch, nxt.stoch)  # randomness only from the generator
    assert model.reward(nxt).shape == (4,)


def test_bad_input_shapes_raise_value_error(model):
    obs, act = batch(4, 2)
    with pytest.raises(ValueError, match="obs_seq"):
        model(obs[0], act)
    with pytest.raises(ValueError, match="act_seq"):
        model(obs, act[..., :1])
    with pytest.raises(ValueError, match="action_dim"):
        WorldModel(0, get_config("smoke"))


def test_preprocess_reduces_to_5_bits_with_uniform_noise_centred():
    obs = torch.arange(256, dtype=torch.float32).div(255).repeat(48)[: 64 * 64 * 3].reshape(64, 64, 3)
    x = preprocess_obs(obs, 5, gen(3))
    assert x.min() >= -0.5 and x.max() < 0.5
    levels = torch.floor((x + 0.5) * 32)
    expected = torch.floor(torch.round(obs * 255) / 8)
    assert torch.equal(levels, expected)  # noise stays within its bin
    assert torch.equal(x, preprocess_obs(obs, 5, gen(3)))
    assert not torch.equal(x, preprocess_obs(obs, 5, gen(4)))
    centre = preprocess_obs(obs, 5, noise=False)
    torch.testing.assert_close(centre, (expected + 0.5) / 32 - 0.5)
    torch.testing.assert_close(preprocess_obs((obs * 255).round().to(torch.uint8), 5, noise=False), centre)
    with pytest.raises(ValueError, match="64, 64, 3"):
        preprocess_obs(torch.zeros(3, 64, 64), 5)
