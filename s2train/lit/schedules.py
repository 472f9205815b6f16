"""Learning-rate schedules as multipliers of the base LR (for `torch.optim.lr_scheduler.LambdaLR`)."""

from __future__ import annotations

import math
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_stable_decay(
    step: int, warmup_steps: int, total_steps: int, decay_fraction: float = 0.2, min_ratio: float = 0.0
) -> float:
    """Linear warm-up, constant plateau, then linear decay over the last `decay_fraction` of training.

    Returns:
        LR multiplier in [min_ratio, 1].
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, int(total_steps * decay_fraction))
    decay_start = max(warmup_steps, total_steps - decay_steps)
    if step < decay_start:
        return 1.0
    frac = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
    return max(min_ratio, 1.0 - frac * (1.0 - min_ratio))


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warm-up then cosine decay to `min_ratio` at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    frac = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))


def constant_with_warmup(step: int, warmup_steps: int) -> float:
    """Linear warm-up then constant."""
    return (step + 1) / warmup_steps if warmup_steps > 0 and step < warmup_steps else 1.0


def build_scheduler(
    optimizer: Optimizer,
    name: str,
    total_steps: int,
    warmup_steps: int = 0,
    decay_fraction: float = 0.2,
    min_ratio: float = 0.1,
) -> LambdaLR:
    """Build a per-step LambdaLR.

    Args:
        name: "wsd" (warmup-stable-decay), "cosine" or "constant".
        total_steps: optimizer steps of the run.
    """
    if name == "wsd":
        fn = partial(warmup_stable_decay, warmup_steps=warmup_steps, total_steps=total_steps,
                     decay_fraction=decay_fraction, min_ratio=min_ratio)  # fmt: skip
    elif name == "cosine":
        fn = partial(warmup_cosine, warmup_steps=warmup_steps, total_steps=total_steps, min_ratio=min_ratio)
    elif name == "constant":
        fn = partial(constant_with_warmup, warmup_steps=warmup_steps)
    else:
        raise ValueError(f"unknown scheduler {name!r}; use 'wsd', 'cosine' or 'constant'")
    return LambdaLR(optimizer, fn)
