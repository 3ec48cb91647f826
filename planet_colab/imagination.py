"""What the world model makes of a stored episode: its reconstructions and its open-loop imagination.

These run the model and return arrays (uint8 frames, per-step errors and rewards); `viz` draws them
(`plot_reconstructions`, `plot_open_loop`) and `bench openloop` averages them. Both read a whole
episode at once, one sequence of batch size 1, with no gradients. The settings they need (bit depth,
horizon) come from the `config` they are given, as in training and evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from planet_colab.config import Config
from planet_colab.frames import as_frames, to_numpy


def _model_inputs(model: Any, obs: Any, actions: Any, bit_depth: int) -> tuple[Any, Any]:
    """Preprocessed obs (T, 1, 64, 64, 3) and actions (T, 1, A) on the model's device."""
    import torch

    from planet_colab.models import preprocess_obs

    obs_u8 = as_frames(obs, "obs")
    if obs_u8.shape[1:] != (64, 64, 3):
        raise ValueError(f"obs: expected (T, 64, 64, 3) observations, got {obs_u8.shape}")
    act = to_numpy(actions).astype(np.float32)
    if act.ndim == 1:
        act = act[:, None]
    if act.ndim != 2 or len(act) != len(obs_u8) or act.shape[1] != model.action_dim:
        raise ValueError(f"actions: expected shape (T, A) = ({len(obs_u8)}, {model.action_dim}) "
                         f"matching obs, got {act.shape}")
    device = next(model.parameters()).device
    # Bin centres (no dequantisation noise): the picture is the same every time it is drawn.
    obs_pre = preprocess_obs(torch.from_numpy(obs_u8).to(device), bit_depth, noise=False)
    return obs_pre[:, None], torch.from_numpy(act).to(device)[:, None]


def _to_pixels(x: Any) -> np.ndarray:
    """Decoder output in the preprocessed space [-0.5, 0.5] → uint8 pixels."""
    return np.clip(np.round((to_numpy(x).astype(np.float32) + 0.5) * 255.0), 0, 255).astype(np.uint8)


def filter_episode(model: Any, obs: Any, actions: Any, *, config: Config, generator: Any = None) -> dict[str, Any]:
    """A stored episode filtered as training filters it (no dequantisation noise): WorldModel's outputs, batch 1."""
    import torch

    obs_pre, act = _model_inputs(model, obs, actions, config.bit_depth)  # (T, 1, 64, 64, 3), (T, 1, A)
    with torch.no_grad():
        return model(obs_pre, act, generator=generator)


def reconstruct_episode(model: Any, obs: Any, actions: Any, *, config: Config,
                        generator: Any = None) -> np.ndarray:
    """Filter a stored episode with the model and decode every posterior state: (T, 64, 64, 3) uint8."""
    out = filter_episode(model, obs, actions, config=config, generator=generator)
    return _to_pixels(out["recon"][:, 0].float())  # (T, 64, 64, 3)


def posterior_rewards(model: Any, obs: Any, actions: Any, *, config: Config, generator: Any = None) -> np.ndarray:
    """The reward head on a stored episode's filtered states, aligned to its rewards: (T - 1,) for r_0 … r_{T-2}."""
    out = filter_episode(model, obs, actions, config=config, generator=generator)
    # reward(s_t) predicts r_{t-1}, as in training: predictions 1..T-1 against rewards 0..T-2.
    return to_numpy(out["reward"][1:, 0].float()).reshape(-1)


def open_loop_predict(model: Any, obs: Any, actions: Any, rewards: Any = None, *, config: Config,
                      context: int = 5, horizon: int | None = None, start: int = 0,
                      generator: Any = None) -> dict[str, Any]:
    """Filter `context` real frames, then imagine `horizon` steps with the recorded actions; arrays to plot.

    `horizon` defaults to config.horizon, the planner's; config.bit_depth preprocesses the frames.

    Returns real and pred (context + horizon, 64, 64, 3) uint8 (pred's first `context` frames are
    posterior reconstructions, the rest prior predictions), mse (context + horizon,) in [0, 1]
    pixel units, context, start, and with `rewards` given: pred_reward and real_reward (horizon,),
    reward(s_{t+1}) ≈ r_t as in the planner.
    """
    import torch

    horizon = config.horizon if horizon is None else horizon
    for name, value, low in (("context", context, 1), ("horizon", horizon, 1), ("start", start, 0)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    obs_pre, act = _model_inputs(model, obs, actions, config.bit_depth)  # (T, 1, 64, 64, 3), (T, 1, A)
    span = context + horizon
    if start + span > len(obs_pre):
        raise ValueError(f"start + context + horizon = {start + span} exceeds the episode's "
                         f"{len(obs_pre)} steps; use a smaller start, context or horizon")
    rew = None
    if rewards is not None:
        rew = to_numpy(rewards).astype(np.float32).reshape(-1)
        if len(rew) != len(obs_pre):
            raise ValueError(f"rewards: expected {len(obs_pre)} values (one per step), got {len(rew)}")

    decoded, pred_reward = [], []
    with torch.no_grad():
        state = model.initial_state(1)
        prev = torch.zeros_like(act[0])  # a sequence starts with a zero previous action, as in training
        for t in range(start, start + context):
            state, _, _ = model.obs_step(state, prev, model.encode(obs_pre[t]), generator=generator)
            decoded.append(model.decode(state)[0])
            prev = act[t]
        for t in range(start + context, start + span):
            state, _, _ = model.img_step(state, prev, generator=generator)  # prior only: no o_t
            decoded.append(model.decode(state)[0])
            pred_reward.append(float(model.reward(state)[0]))
            prev = act[t]
    pred = _to_pixels(torch.stack(decoded).float())  # (context + horizon, 64, 64, 3)
    real = as_frames(obs, "obs")[start:start + span]
    mse = ((real.astype(np.float32) - pred.astype(np.float32)) / 255.0) ** 2
    result: dict[str, Any] = {"real": real, "pred": pred, "mse": mse.mean(axis=(1, 2, 3)),
                              "context": int(context), "start": int(start)}
    if rew is not None:
        # The state reached by a_{t-1} predicts r_{t-1}.
        result["pred_reward"] = np.array(pred_reward, dtype=np.float32)
        result["real_reward"] = rew[start + context - 1:start + span - 1]
    return result
