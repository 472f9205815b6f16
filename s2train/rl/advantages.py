"""Group-relative advantages for GRPO.

Rollouts are laid out contiguously: the ``G`` completions of prompt ``b`` sit at rows ``b*G .. b*G+G-1`` of a
flat ``[B*G]`` reward vector. The default is Dr.GRPO (``A = R - mean_group(R)``, no std division), which the
S2 report uses; dividing by the std re-weights prompts by how noisy their rewards are, a known length/difficulty
bias.
"""

from __future__ import annotations

import torch
from torch import Tensor

SCALES = ("none", "group", "batch")


def group_view(values: Tensor, group_size: int) -> Tensor:
    """Reshape a flat per-sample vector into groups.

    Args:
        values: ``[B*G]`` per-sample values, groups contiguous.
        group_size: ``G``.

    Returns:
        ``[B, G]`` view of ``values``.
    """
    if values.dim() != 1:
        raise ValueError(f"expected a flat [B*G] tensor, got shape {tuple(values.shape)}")
    if group_size < 1 or values.numel() % group_size != 0:
        raise ValueError(f"{values.numel()} samples do not split into groups of size {group_size}")
    return values.view(-1, group_size)


def group_advantages(rewards: Tensor, group_size: int, scale: str = "none", eps: float = 1e-4) -> Tensor:
    """Group-relative advantages.

    Args:
        rewards: ``[B*G]`` total reward per completion.
        group_size: ``G``, completions per prompt.
        scale: ``"none"`` (Dr.GRPO, ``A = R - mean_g R``), ``"group"`` (divide by the group's std, original
            GRPO) or ``"batch"`` (divide by the std of the whole batch's rewards).
        eps: added to the std so that a group with identical rewards gives zeros, not NaNs.

    Returns:
        ``[B*G]`` float advantages; every group sums to zero.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; choose one of {SCALES}")
    r = group_view(rewards.float(), group_size)
    bad = int((~torch.isfinite(r)).sum())
    if bad:
        # One NaN would poison every weight through the loss; RewardStack repairs failures before this point.
        raise ValueError(
            f"{bad} of {r.numel()} rewards are not finite; score through RewardStack to repair them"
        )
    adv = r - r.mean(dim=1, keepdim=True)
    if scale == "group":
        # unbiased=False: with G=2 the unbiased std is sqrt(2) times larger, an arbitrary factor.
        adv = adv / (r.std(dim=1, unbiased=False, keepdim=True) + eps)
    elif scale == "batch":
        adv = adv / (r.std(unbiased=False) + eps)
    return adv.reshape(-1)


def group_stats(rewards: Tensor, group_size: int) -> dict[str, float]:
    """Diagnostics: mean within-group std and the fraction of groups whose rewards are all equal.

    Groups with zero spread contribute no gradient under GRPO, so a high ``zero_std_frac`` means wasted
    rollouts.
    """
    r = group_view(rewards.float(), group_size)
    std = r.std(dim=1, unbiased=False)
    return {
        "group_std": float(std.mean()),
        "zero_std_frac": float((std < 1e-8).float().mean()),
    }


__all__ = ["SCALES", "group_advantages", "group_stats", "group_view"]
