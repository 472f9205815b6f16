import pytest
import torch

from s2train.rl.advantages import group_advantages, group_stats


def test_dr_grpo_is_reward_minus_group_mean():
    r = torch.tensor([1.0, 3.0, 0.0, 0.0, 2.0, 4.0])
    adv = group_advantages(r, group_size=3)
    assert torch.allclose(adv, torch.tensor([-1 / 3, 5 / 3, -4 / 3, -2.0, 0.0, 2.0]))
    assert torch.allclose(adv.view(2, 3).sum(1), torch.zeros(2), atol=1e-6)


def test_group_scaling_divides_by_population_std():
    r = torch.tensor([0.0, 2.0, 5.0, 5.0])
    adv = group_advantages(r, 2, scale="group", eps=0.0 + 1e-12)
    # group 0: mean 1, std 1 -> [-1, 1]; group 1: identical rewards -> zeros, not NaN
    assert torch.allclose(adv, torch.tensor([-1.0, 1.0, 0.0, 0.0]), atol=1e-5)


def test_batch_scaling_uses_whole_batch_std():
    r = torch.tensor([0.0, 2.0, 4.0, 8.0])
    std = r.std(unbiased=False)
    adv = group_advantages(r, 2, scale="batch", eps=0.0)
    assert torch.allclose(adv, torch.tensor([-1.0, 1.0, -2.0, 2.0]) / std)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="groups of size 3"):
        group_advantages(torch.zeros(4), 3)
    with pytest.raises(ValueError, match="1 of 4 rewards are not finite"):
        group_advantages(torch.tensor([0.0, float("nan"), 1.0, 2.0]), 2)
    with pytest.raises(ValueError, match="unknown advantage scale"):
        group_advantages(torch.zeros(4), 2, scale="rank")


def test_group_stats_flags_zero_spread_groups():
    st = group_stats(torch.tensor([1.0, 1.0, 0.0, 2.0]), 2)
    assert st["zero_std_frac"] == 0.5
    assert st["group_std"] == pytest.approx(0.5)
