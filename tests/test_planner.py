"""CEM planner: finds a known optimum, respects action bounds, is reproducible and batched over beliefs."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

from planet_colab.config import get_config
from planet_colab.planner import CEMPlanner, warm_start


class ToyState(NamedTuple):
    deter: torch.Tensor  # (N, A): the target action this belief rewards
    stoch: torch.Tensor  # (N, A): the last action taken


class ToyModel:
    """A latent 'model' whose predicted reward is -(a - target)², target carried in the belief."""

    def __init__(self, action_dim: int = 1, noisy: bool = False) -> None:
        self.action_dim = action_dim
        self.noisy = noisy
        self.steps = 0

    def initial_state(self, batch_size: int, device=None) -> ToyState:
        zeros = torch.zeros(batch_size, self.action_dim, device=device)
        return ToyState(zeros, zeros.clone())

    def img_step(self, state: ToyState, action: torch.Tensor, generator=None):
        self.steps += 1
        stoch = action.clone()
        if self.noisy:  # a stochastic latent: draws must come from the caller's generator
            stoch = stoch + 0.01 * torch.randn(stoch.shape, generator=generator)
        return ToyState(state.deter, stoch), stoch, torch.ones_like(stoch)

    def reward(self, state: ToyState) -> torch.Tensor:
        return -((state.stoch - state.deter) ** 2).sum(-1)


def beliefs(*targets: float) -> ToyState:
    target = torch.tensor(targets, dtype=torch.float32).unsqueeze(1)  # (N, 1)
    return ToyState(target, torch.zeros_like(target))


def small_planner(**kw) -> CEMPlanner:
    args = dict(action_dim=1, horizon=3, candidates=200, optim_iters=6, top_k=20)
    return CEMPlanner(**{**args, **kw})


def test_planner_finds_the_action_with_the_best_predicted_reward():
    action = small_planner()(ToyModel(), beliefs(0.7), torch.Generator().manual_seed(0))
    assert action.shape == (1, 1) and action.dtype == torch.float32
    assert action.item() == pytest.approx(0.7, abs=0.03)


def test_optimum_outside_the_bounds_gives_the_nearest_bound():
    action = small_planner()(ToyModel(), beliefs(1.8, -3.0), torch.Generator().manual_seed(0))
    assert action.abs().max() <= 1.0
    assert action[0].item() == pytest.approx(1.0, abs=0.03)
    assert action[1].item() == pytest.approx(-1.0, abs=0.03)


def test_batch_of_beliefs_gives_one_plan_per_belief():
    action = small_planner()(ToyModel(), beliefs(0.7, -0.3, 0.0), torch.Generator().manual_seed(1))
    assert action.shape == (3, 1)
    assert action.squeeze(1).tolist() == pytest.approx([0.7, -0.3, 0.0], abs=0.03)


def test_same_generator_seed_gives_the_same_action_and_another_seed_differs():
    planner, model = small_planner(), ToyModel(noisy=True)
    first = planner(model, beliefs(0.2), torch.Generator().manual_seed(5))
    again = planner(model, beliefs(0.2), torch.Generator().manual_seed(5))
    other = planner(model, beliefs(0.2), torch.Generator().manual_seed(6))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_multidimensional_actions():
    model = ToyModel(action_dim=3)
    state = ToyState(torch.tensor([[0.5, -0.5, 0.9]]), torch.zeros(1, 3))
    action = small_planner(action_dim=3, candidates=400, optim_iters=8, top_k=40)(
        model, state, torch.Generator().manual_seed(0))
    assert action.squeeze(0).tolist() == pytest.approx([0.5, -0.5, 0.9], abs=0.05)


def test_planning_imagines_horizon_steps_per_iteration_in_one_batch():
    model = ToyModel()
    small_planner(horizon=4, optim_iters=3)(model, beliefs(0.0, 0.1), torch.Generator().manual_seed(0))
    assert model.steps == 4 * 3  # candidates and beliefs batched: one img_step call per step


def test_from_config_takes_the_paper_settings():
    planner = CEMPlanner.from_config(get_config("paper"), action_dim=1)
    assert (planner.horizon, planner.candidates, planner.optim_iters, planner.top_k) == (12, 1000, 10, 100)
    assert planner.precision == get_config("paper").precision
    pendulum = CEMPlanner.from_config(get_config("pendulum"), action_dim=1)
    assert (pendulum.candidates, pendulum.optim_iters, pendulum.top_k) == (500, 5, 50)
    assert CEMPlanner.from_config(get_config("smoke"), 1, precision="bf16").precision == "bf16"


def test_bad_hyperparameters_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="top_k"):
        CEMPlanner(1, horizon=3, candidates=10, optim_iters=2, top_k=11)
    with pytest.raises(ValueError, match="horizon"):
        CEMPlanner(1, horizon=0)
    with pytest.raises(ValueError, match="precision"):
        CEMPlanner(1, precision="fp8")
    with pytest.raises(ValueError, match="action_dim"):
        small_planner(action_dim=2)(ToyModel(action_dim=1), beliefs(0.0), None)


def test_bf16_planning_still_finds_the_optimum():
    action = small_planner(precision="bf16")(ToyModel(), beliefs(0.7), torch.Generator().manual_seed(0))
    assert action.dtype == torch.float32
    assert action.item() == pytest.approx(0.7, abs=0.05)


def test_warm_start_shifts_the_plan_by_a_step_and_starts_the_new_last_step_as_the_paper_does():
    plan = torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)
    mean, std = warm_start(plan, 0.4)
    assert mean.flatten().tolist() == pytest.approx([0.2, 0.3, 0.0])
    assert std.flatten().tolist() == pytest.approx([0.4, 0.4, 1.0])


def test_a_start_of_zero_mean_and_unit_std_is_the_papers_search_bit_for_bit():
    planner, model = small_planner(), ToyModel()
    cold = planner.plan(model, beliefs(0.7, -0.2), torch.Generator().manual_seed(3))
    start = (torch.zeros(3, 2, 1), torch.ones(3, 2, 1))
    assert torch.equal(planner.plan(model, beliefs(0.7, -0.2), torch.Generator().manual_seed(3), start=start), cold)


def test_a_warm_start_from_a_good_plan_needs_fewer_refits():
    planner, model = small_planner(candidates=50, optim_iters=1, top_k=5), ToyModel()
    errors = {"cold": [], "warm": []}
    for seed in range(10):
        plan = small_planner().plan(model, beliefs(0.7), torch.Generator().manual_seed(100 + seed))
        for name, start in (("cold", None), ("warm", warm_start(plan, 0.5))):
            action = planner.plan(model, beliefs(0.7), torch.Generator().manual_seed(seed), start=start)[0]
            errors[name].append(abs(action.item() - 0.7))
    assert sum(errors["warm"]) < sum(errors["cold"]) / 2


def test_a_start_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="start must be"):
        small_planner().plan(ToyModel(), beliefs(0.7), start=(torch.zeros(2, 1, 1), torch.ones(2, 1, 1)))
