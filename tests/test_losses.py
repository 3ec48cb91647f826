"""train_step and the PlaNet objective: free nats, overfitting, NaN safety, bit-exact reproducibility."""

import copy
import math

import pytest
import torch

from planet_colab.config import get_config
from planet_colab.losses import gaussian_kl, make_optimizer, train_step, world_model_loss
from planet_colab.models import WorldModel

A = 1
KEYS = {"obs_loss", "reward_loss", "kl", "kl_loss", "loss", "grad_norm", "skipped", "embed_spread"}


def fresh(cfg=None, seed=0):
    torch.manual_seed(seed)
    model = WorldModel(A, cfg or get_config("smoke"))
    return model, make_optimizer(model, model.config)


def data(T=6, B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, 64, 64, 3, generator=g), torch.rand(T, B, A, generator=g) * 2 - 1,
            torch.randn(T, B, generator=g))


def state_of(model, optimizer):
    return copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())


def assert_same_state(a, b):
    (ma, oa), (mb, ob) = a, b
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k
    assert oa["state"].keys() == ob["state"].keys()
    for p in oa["state"]:
        for k, v in oa["state"][p].items():
            assert torch.equal(v, ob["state"][p][k]), (p, k)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mq, mp = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    sq, sp = torch.rand(5, 7, generator=g) + 0.1, torch.rand(5, 7, generator=g) + 0.1
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, sq), torch.distributions.Normal(mp, sp))
    torch.testing.assert_close(gaussian_kl(mq, sq, mp, sp), ref.sum(-1))


def test_kl_below_free_nats_is_clamped_and_gives_no_gradient():
    cfg = get_config("smoke")
    T, B, S = 3, 2, cfg.stoch_dim
    prior_mean = torch.zeros(T, B, S, requires_grad=True)
    post_mean = (torch.full((T, B, S), 0.1)).requires_grad_()
    out = {"recon": torch.zeros(T, B, 64, 64, 3), "reward": torch.zeros(T, B),
           "post_mean": post_mean, "post_std": torch.ones(T, B, S),
           "prior_mean": prior_mean, "prior_std": torch.ones(T, B, S)}
    terms = world_model_loss(out, torch.zeros(T, B, 64, 64, 3), torch.zeros(T, B), cfg)
    assert terms["kl"].item() == pytest.approx(0.5 * 0.01 * S)
    assert terms["kl_loss"].item() == cfg.free_nats
    terms["loss"].backward()
    assert post_mean.grad is None or torch.count_nonzero(post_mean.grad) == 0
    # Above the free nats, the KL itself is the loss and trains both sides.
    post_mean2 = torch.full((T, B, S), 3.0, requires_grad=True)
    out["post_mean"] = post_mean2
    terms = world_model_loss(out, torch.zeros(T, B, 64, 64, 3), torch.zeros(T, B), cfg)
    assert terms["kl_loss"].item() == pytest.approx(terms["kl"].item()) and terms["kl"].item() > cfg.free_nats
    terms["loss"].backward()
    assert torch.count_nonzero(post_mean2.grad) > 0


def _kl_grads(cfg):
    """Gradients reaching the posterior and prior means through the KL term, and the terms."""
    T, B, S = 3, 2, cfg.stoch_dim
    g = torch.Generator().manual_seed(1)
    post_mean = torch.randn(T, B, S, generator=g).mul(2).requires_grad_()
    prior_mean = torch.randn(T, B, S, generator=g).requires_grad_()
    post_std = (torch.rand(T, B, S, generator=g) + 0.5).requires_grad_()
    prior_std = (torch.rand(T, B, S, generator=g) + 0.5).requires_grad_()
    out = {"recon": torch.zeros(T, B, 64, 64, 3), "reward": torch.zeros(T, B), "post_mean": post_mean,
           "post_std": post_std, "prior_mean": prior_mean, "prior_std": prior_std}
    terms = world_model_loss(out, torch.zeros(T, B, 64, 64, 3), torch.zeros(T, B), cfg)
    terms["kl_loss"].backward()
    return terms, post_mean.grad, prior_mean.grad, post_std.grad, prior_std.grad


def test_kl_balance_keeps_the_value_and_moves_the_prior_more():
    plain = _kl_grads(get_config("smoke", free_nats=0.0))
    balanced = _kl_grads(get_config("smoke", free_nats=0.0, kl_balance=0.8))
    assert balanced[0]["kl_loss"].item() == pytest.approx(plain[0]["kl_loss"].item(), rel=1e-6)
    # α = 0.8: the prior's side gets 2α = 1.6 of the plain gradient, the posterior's 2(1 − α) = 0.4.
    torch.testing.assert_close(balanced[2], 1.6 * plain[2])
    torch.testing.assert_close(balanced[4], 1.6 * plain[4])
    torch.testing.assert_close(balanced[1], 0.4 * plain[1])
    torch.testing.assert_close(balanced[3], 0.4 * plain[3])


def test_reward_loss_pairs_reward_head_at_t_with_reward_t_minus_1():
    cfg = get_config("smoke")
    T, B, S = 4, 1, cfg.stoch_dim
    rew = torch.tensor([[1.0], [2.0], [3.0], [99.0]])  # r_{T-1} has no prediction
    z = torch.zeros(T, B, S)
    out = {"recon": torch.zeros(T, B, 64, 64, 3), "reward": torch.tensor([[42.0], [1.0], [2.0], [3.0]]),
           "post_mean": z, "post_std": z + 1, "prior_mean": z, "prior_std": z + 1}
    terms = world_model_loss(out, torch.zeros(T, B, 64, 64, 3), rew, cfg)
    assert terms["reward_loss"].item() == 0.0


def test_train_step_returns_python_floats_and_changes_weights():
    model, opt = fresh()
    before = copy.deepcopy(model.state_dict())
    res = train_step(model, opt, *data(), "cpu", config=model.config,
                     generator=torch.Generator().manual_seed(0))
    assert set(res) == KEYS and all(isinstance(v, float) for v in res.values())
    assert res["skipped"] == 0.0 and math.isfinite(res["grad_norm"])
    assert res["loss"] == pytest.approx(res["obs_loss"] + res["reward_loss"] + res["kl_loss"], rel=1e-5)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_overfits_a_fixed_small_batch():
    # Smooth images (a bright disc whose position depends on the sequence) are quick to learn.
    T, B = 6, 4
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    cx = torch.linspace(16, 48, B)
    disc = ((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - 32) ** 2 < 150).float()  # (B, 64, 64)
    obs = disc[None, :, :, :, None].expand(T, B, 64, 64, 3) * torch.tensor([0.9, 0.5, 0.2])
    act = torch.zeros(T, B, A)
    rew = torch.linspace(-1, 1, B).expand(T, B).contiguous()
    model, opt = fresh(get_config("smoke", cnn_depth=8, deter_dim=32, hidden_dim=32))
    g = torch.Generator().manual_seed(0)
    first = train_step(model, opt, obs, act, rew, "cpu", config=model.config, generator=g)
    for _ in range(40):
        last = train_step(model, opt, obs, act, rew, "cpu", config=model.config, generator=g)
    assert last["loss"] < first["loss"] / 4, (first, last)
    assert last["obs_loss"] < first["obs_loss"] / 4, (first, last)
    assert last["skipped"] == 0.0


def test_nan_batch_warns_and_leaves_weights_and_adam_state_unchanged():
    model, opt = fresh()
    obs, act, rew = data()
    train_step(model, opt, obs, act, rew, "cpu", config=model.config,
               generator=torch.Generator().manual_seed(0))  # Adam has state
    saved = state_of(model, opt)
    bad = obs.clone()
    bad[2, 1, 5, 5, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        res = train_step(model, opt, bad, act, rew, "cpu", config=model.config)
    assert res["skipped"] == 1.0 and math.isnan(res["loss"])
    assert_same_state(saved, state_of(model, opt))
    assert all(p.grad is None for p in model.parameters())


def test_non_finite_gradient_skips_the_update():
    model, opt = fresh()
    obs, act, rew = data()
    train_step(model, opt, obs, act, rew, "cpu", config=model.config, generator=torch.Generator().manual_seed(0))
    saved = state_of(model, opt)
    handle = model.reward_head[0].weight.register_hook(lambda grad: grad * float("inf"))
    try:
        with pytest.warns(RuntimeWarning, match="non-finite gradient"):
            res = train_step(model, opt, obs, act, rew, "cpu", config=model.config)
    finally:
        handle.remove()
    assert res["skipped"] == 1.0 and math.isfinite(res["loss"])
    assert_same_state(saved, state_of(model, opt))
    assert train_step(model, opt, obs, act, rew, "cpu", config=model.config)["skipped"] == 0.0  # and training goes on


def test_same_generator_seed_gives_bit_identical_weights():
    obs, act, rew = data()
    finals = []
    for gen_seed in (5, 5, 6):
        model, opt = fresh()
        g = torch.Generator().manual_seed(gen_seed)
        for _ in range(3):
            train_step(model, opt, obs, act, rew, "cpu", config=model.config, generator=g)
        finals.append(model.state_dict())
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    assert not all(torch.equal(finals[0][k], finals[2][k]) for k in finals[0])


def test_bad_batch_shapes_raise_value_error_naming_the_tensor():
    model, opt = fresh()
    obs, act, rew = data()
    with pytest.raises(ValueError, match="obs_b"):
        train_step(model, opt, obs.permute(1, 0, 2, 3, 4)[..., :2], act, rew, "cpu", config=model.config)
    with pytest.raises(ValueError, match="act_b"):
        train_step(model, opt, obs, act[:, :2], rew, "cpu", config=model.config)
    with pytest.raises(ValueError, match="rew_b"):
        train_step(model, opt, obs, act, rew[:-1], "cpu", config=model.config)
    with pytest.raises(ValueError, match="at least 2"):
        train_step(model, opt, obs[:1], act[:1], rew[:1], "cpu", config=model.config)


def test_optimizer_uses_paper_hyperparameters():
    model, opt = fresh()
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["eps"] == 1e-4


def test_train_step_takes_its_hyperparameters_from_the_config_it_is_given():
    model, opt = fresh()  # built with the smoke config: 3 free nats
    res = train_step(model, opt, *data(), "cpu", config=model.config.replace(free_nats=50.0),
                     generator=torch.Generator().manual_seed(0))
    assert res["kl_loss"] == 50.0


def test_a_train_step_reports_how_much_the_encoder_tells_frames_apart():
    """embed_spread is ~0 exactly when every frame gets the same embedding (dead ReLUs: a blind model)."""
    config = get_config("smoke")
    torch.manual_seed(0)
    obs = torch.rand(config.seq_len, config.batch_size, 64, 64, 3)
    act = torch.rand(config.seq_len, config.batch_size, 1) * 2 - 1
    rew = torch.rand(config.seq_len, config.batch_size)
    model = WorldModel(1, config)
    live = train_step(model, make_optimizer(model, config), obs, act, rew, "cpu", config=config)
    last = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-1.0)  # the last ReLU below zero for every frame
    dead = train_step(model, make_optimizer(model, config), obs, act, rew, "cpu", config=config)
    assert live["embed_spread"] > 1e-4 and dead["embed_spread"] == 0.0
