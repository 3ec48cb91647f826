"""PlaNet's training objective and one gradient step (`train_step`), plus the optimiser.

Objective per sequence batch (time-first, see WorldModel for the time alignment):
  obs_loss    = E_{t,b} ½‖decode(s_t) − o_t‖²   (unit-variance Gaussian NLL, constant dropped;
                summed over pixels and channels, mean over time and batch)
  reward_loss = E_{t≥1,b} ½(reward(s_t) − r_{t-1})²  (unit-variance Gaussian NLL)
  kl_loss     = max(E_{t,b} KL(post_t ‖ prior_t), free_nats)  with the KL summed over state dims.
The free-nats clamp is applied to the mean KL, as PlaNet's code does (tf.maximum on the averaged
divergence): while the average KL is below `free_nats` it gets no gradient at all. `kl_balance` α
(DreamerV2) splits the KL's gradient: 2α to the prior, 2(1 − α) to the posterior, same value; α = 0.5
is the plain KL. All of these are computed in fp32 whatever the autocast precision of the forward pass.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from planet_colab.config import Config
from planet_colab.models import WorldModel, preprocess_obs
from planet_colab.precision import (autocast_context, configure_cpu_allocator, make_grad_scaler,
                                    resolve_precision)


def make_optimizer(model: WorldModel, config: Config) -> torch.optim.Adam:
    """Adam over the model's parameters with the config's lr and eps (the paper's 1e-3 and 1e-4 by default)."""
    params = list(model.parameters())
    # The fused kernel is one pass over all parameters (3× faster than the per-tensor loop on CPU).
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
    return torch.optim.Adam(params, lr=config.learning_rate, eps=config.adam_eps, fused=fused or None)


def gaussian_kl(mean_q: Tensor, std_q: Tensor, mean_p: Tensor, std_p: Tensor) -> Tensor:
    """KL(N(mean_q, std_q) ‖ N(mean_p, std_p)) of diagonal Gaussians, summed over the last dim, in fp32."""
    mean_q, std_q, mean_p, std_p = (x.float() for x in (mean_q, std_q, mean_p, std_p))
    var_ratio = (std_q / std_p) ** 2
    mahal = ((mean_q - mean_p) / std_p) ** 2
    return 0.5 * (var_ratio + mahal - 1.0 - torch.log(var_ratio)).sum(-1)


def world_model_loss(out: dict[str, Tensor], obs_pre: Tensor, rew: Tensor, config: Config) -> dict[str, Tensor]:
    """Scalar fp32 loss terms from WorldModel.forward's output; keys obs_loss, reward_loss, kl, kl_loss, loss."""
    T, B = obs_pre.shape[:2]
    # ½ Σ_pixels (x̂ − x)², averaged over (t, b): one fused kernel each way
    obs_loss = F.mse_loss(out["recon"].float(), obs_pre.float(), reduction="sum") * (0.5 / (T * B))
    # reward(s_t) predicts r_{t-1}: compare predictions 1..T-1 with rewards 0..T-2.
    reward_loss = 0.5 * (out["reward"][1:].float() - rew[:-1].float()).pow(2).mean()
    alpha = float(config.kl_balance)
    if alpha == 0.5:
        kl = gaussian_kl(out["post_mean"], out["post_std"], out["prior_mean"], out["prior_std"]).mean()
    else:
        # Both halves have the KL's value; the gradient reaches the prior with weight 2α, the posterior 2(1 − α).
        to_prior = gaussian_kl(out["post_mean"].detach(), out["post_std"].detach(),
                               out["prior_mean"], out["prior_std"]).mean()
        to_post = gaussian_kl(out["post_mean"], out["post_std"],
                              out["prior_mean"].detach(), out["prior_std"].detach()).mean()
        kl = 2 * (alpha * to_prior + (1 - alpha) * to_post) - to_prior.detach()
    kl_loss = torch.clamp(kl, min=float(config.free_nats))
    return {"obs_loss": obs_loss, "reward_loss": reward_loss, "kl": kl, "kl_loss": kl_loss,
            "loss": obs_loss + reward_loss + kl_loss}


def _check_batch(model: WorldModel, obs_b: Tensor, act_b: Tensor, rew_b: Tensor) -> None:
    """Raise ValueError naming the tensor whose shape does not fit the time-first layout."""
    if not isinstance(obs_b, Tensor) or obs_b.dim() != 5 or tuple(obs_b.shape[2:]) != (64, 64, 3):
        raise ValueError(f"obs_b must be a time-first tensor (T, B, 64, 64, 3), got "
                         f"{tuple(obs_b.shape) if isinstance(obs_b, Tensor) else type(obs_b).__name__}")
    T, B = obs_b.shape[:2]
    if T < 2:
        raise ValueError(f"obs_b needs at least 2 timesteps (reward(s_t) predicts r_(t-1)), got T={T}")
    if not isinstance(act_b, Tensor) or tuple(act_b.shape) != (T, B, model.action_dim):
        raise ValueError(f"act_b must be (T, B, A) = ({T}, {B}, {model.action_dim}), got "
                         f"{tuple(act_b.shape) if isinstance(act_b, Tensor) else type(act_b).__name__}")
    if not isinstance(rew_b, Tensor) or tuple(rew_b.shape) != (T, B):
        raise ValueError(f"rew_b must be (T, B) = ({T}, {B}), got "
                         f"{tuple(rew_b.shape) if isinstance(rew_b, Tensor) else type(rew_b).__name__}")


# Below this the embedding is one vector for every frame: dead encoders measured 0.00000-0.0001 (cup_catch and
# cheetah_run seed 2 of the benchmark), live ones 0.035-0.07, fresh default-initialised ones 0.0009 (cup_catch's
# frames, which differ least) to 0.0018 (the smoke preset's depth-4 encoder on Pendulum).
SILENT_SPREAD = 3e-4


def embedding_spread(embed: Tensor) -> float:
    """How much the encoder's output varies across a batch's frames: std per dimension, mean over dimensions.

    ~0 means one embedding for every frame (a ReLU encoder's units dead for every input): the model sees nothing and
    follows the actions alone (docs/results/benchmark/sweep.md, cup_catch)."""
    with torch.no_grad():
        return float(embed.detach().float().reshape(-1, embed.shape[-1]).std(0).mean())


def train_step(model: WorldModel, optimizer: torch.optim.Optimizer, obs_b: Tensor, act_b: Tensor,
               rew_b: Tensor, device: torch.device | str, *, config: Config,
               generator: torch.Generator | None = None,
               scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One gradient step on a time-first batch (obs in [0,1]); returns the losses as Python floats.

    Keys: obs_loss, reward_loss, kl (mean KL before the clamp), kl_loss, loss, embed_spread
    (`embedding_spread` of the batch), grad_norm (before clipping to config.grad_clip_norm), skipped
    (1.0 when the update was not applied). A non-finite loss or gradient norm skips the update with a
    warning, leaving weights and Adam state untouched.
    Randomness (dequantisation noise, latent samples) comes only from `generator` when given.
    With precision fp16 and no `scaler`, one is created and kept on the optimizer (attribute
    `planet_grad_scaler`) so its scale persists across steps. Every hyperparameter comes from `config`.
    """
    device = torch.device(device)
    _check_batch(model, obs_b, act_b, rew_b)
    precision = resolve_precision(config.precision, device)
    if scaler is None and precision == "fp16":
        scaler = getattr(optimizer, "planet_grad_scaler", None)
        if scaler is None:
            scaler = make_grad_scaler(precision, device)
            optimizer.planet_grad_scaler = scaler  # type: ignore[attr-defined]

    if device.type == "cpu":
        configure_cpu_allocator()
    model.train()
    obs = obs_b.to(device, non_blocking=True)
    act = act_b.to(device, dtype=torch.float32, non_blocking=True)
    rew = rew_b.to(device, dtype=torch.float32, non_blocking=True)
    obs_pre = preprocess_obs(obs, config.bit_depth, generator)  # (T, B, 64, 64, 3)
    with autocast_context(precision, device):
        out = model(obs_pre, act, generator=generator)
    terms = world_model_loss(out, obs_pre, rew, config)  # fp32, outside autocast
    result = {k: float(v.detach()) for k, v in terms.items()}
    result["embed_spread"] = embedding_spread(out["embed"])
    result["grad_norm"] = math.nan
    result["skipped"] = 1.0

    optimizer.zero_grad(set_to_none=True)
    if not math.isfinite(result["loss"]):
        warnings.warn(f"train_step: non-finite loss ({_describe(result)}); update skipped, weights unchanged",
                      RuntimeWarning, stacklevel=2)
        return result
    loss = terms["loss"]
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm))
    result["grad_norm"] = grad_norm
    if math.isfinite(grad_norm):
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        result["skipped"] = 0.0
    elif scaler is not None:
        # fp16 overflow is the scaler's normal business: it skips the step and lowers the scale.
        scaler.step(optimizer)
        scaler.update()
    else:
        warnings.warn(f"train_step: non-finite gradient norm ({grad_norm}); update skipped, weights unchanged",
                      RuntimeWarning, stacklevel=2)
    optimizer.zero_grad(set_to_none=True)
    return result


def _describe(result: dict[str, float]) -> str:
    """Short 'key=value' summary of loss terms for warnings."""
    return ", ".join(f"{k}={result[k]:.4g}" for k in ("obs_loss", "reward_loss", "kl_loss"))
