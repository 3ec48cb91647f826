"""imagination.py: the model's reconstructions and open-loop predictions of a stored episode are the
arrays the plots need, the same for the same generator, and bad spans are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planet_colab.imagination import open_loop_predict, reconstruct_episode


def test_reconstructions_are_one_decoded_frame_per_step(tiny_run):
    config, _, episode, model = tiny_run
    recon = reconstruct_episode(model, episode["obs"], episode["action"], config=config,
                                generator=torch.Generator().manual_seed(0))
    assert recon.shape == episode["obs"].shape and recon.dtype == np.uint8
    again = reconstruct_episode(model, episode["obs"], episode["action"], config=config,
                                generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(recon, again)
    with pytest.raises(ValueError, match="actions"):
        reconstruct_episode(model, episode["obs"], episode["action"][:-1], config=config)


def test_open_loop_filters_context_then_imagines_horizon(tiny_run):
    config, _, episode, model = tiny_run
    result = open_loop_predict(model, episode["obs"], episode["action"], episode["reward"], config=config,
                               context=4, start=2, generator=torch.Generator().manual_seed(0))
    span = 4 + config.horizon
    assert result["real"].shape == result["pred"].shape == (span, 64, 64, 3)
    np.testing.assert_array_equal(result["real"], episode["obs"][2:2 + span])
    assert result["mse"].shape == (span,) and (result["mse"] >= 0).all()
    assert result["pred_reward"].shape == result["real_reward"].shape == (config.horizon,)
    np.testing.assert_array_equal(result["real_reward"], episode["reward"][5:5 + config.horizon])


def test_open_loop_refuses_a_span_longer_than_the_episode(tiny_run):
    config, _, episode, model = tiny_run
    with pytest.raises(ValueError, match="exceeds the episode"):
        open_loop_predict(model, episode["obs"], episode["action"], config=config, context=len(episode["obs"]))
