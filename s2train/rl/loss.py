"""GRPO policy-gradient loss with PPO clipping and a k3 KL penalty to a reference policy.

One call of :func:`grpo_loss` handles one stream of actions: the slow AR's sampled tokens ``[N, T]`` or the
fast AR's sampled codes ``[N, T, K]`` (any trailing dims are flattened into the token axis). The Dual-AR
objective :func:`dual_ar_grpo_loss` is ``L = L_slow + gamma * L_fast`` with the same sequence-level advantage
on every slow token and every fast codebook token (S2 report).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

AGGREGATIONS = ("token", "sequence", "constant")


def k3_kl(logp_new: Tensor, logp_ref: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(pi_new || pi_ref): ``exp(r) - r - 1`` with ``r = logp_ref - logp_new``.

    Non-negative, zero iff the log-probs agree, and unbiased for the KL when tokens are sampled from pi_new.
    """
    r = logp_ref - logp_new
    return torch.exp(r) - r - 1.0


def _flatten(x: Tensor, n: int, name: str) -> Tensor:
    if x.shape[0] != n:
        raise ValueError(f"{name} has {x.shape[0]} rows, expected {n}")
    return x.reshape(n, -1)


def grpo_loss(
    logp_new: Tensor,
    logp_old: Tensor | None,
    logp_ref: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    beta: float = 0.0,
    aggregation: str = "token",
    max_tokens: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped GRPO surrogate for one action stream.

    Args:
        logp_new: ``[N, T]`` or ``[N, T, K]`` log-probs of the sampled actions under the policy being trained
            (carries the gradient).
        logp_old: same shape, log-probs under the policy that generated the rollouts. ``None`` means
            on-policy (first PPO epoch): the ratio is 1 and the gradient is ``A * grad logp``.
        logp_ref: same shape, log-probs under the reference policy; required when ``beta > 0``.
        advantages: ``[N]`` one advantage per sequence, broadcast to all of its tokens.
        mask: same shape as ``logp_new`` (or ``[N, T]`` broadcast over ``K``); 1 on real actions.
        clip_eps: PPO clip range ``[1 - eps, 1 + eps]`` on the ratio.
        beta: weight of the per-token k3 KL penalty.
        aggregation: ``"token"`` (sum over all tokens / number of tokens in the batch), ``"sequence"``
            (mean over each sequence's tokens, then over sequences: the classic GRPO ``1/|o_i|``) or
            ``"constant"`` (sum / (N * max_tokens), Dr.GRPO: no length bias).
        max_tokens: the constant of ``"constant"`` aggregation; defaults to the padded token count per row.

    Returns:
        ``(loss, stats)``; ``stats`` holds detached scalars ``kl`` (mean k3 over real tokens), ``clip_frac``
        (fraction of real tokens whose gradient the clip removed), ``ratio_mean`` and ``num_tokens``.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}")
    if beta > 0 and logp_ref is None:
        raise ValueError("beta > 0 needs logp_ref (log-probs under the reference policy)")
    n = logp_new.shape[0]
    if advantages.shape != (n,):
        raise ValueError(f"advantages must be [N]={n}, got {tuple(advantages.shape)}")
    if mask.shape != logp_new.shape:
        if mask.dim() == 2 and logp_new.dim() == 3 and mask.shape == logp_new.shape[:2]:
            mask = mask.unsqueeze(-1).expand_as(logp_new)
        else:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match logp {tuple(logp_new.shape)}")

    new = _flatten(logp_new, n, "logp_new")
    m = _flatten(mask, n, "mask").to(new.dtype)
    adv = advantages.to(new.dtype).unsqueeze(1)
    old = new.detach() if logp_old is None else _flatten(logp_old, n, "logp_old").to(new.dtype)

    ratio = torch.exp(new - old)
    surr1 = ratio * adv
    surr2 = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv
    per_token = -torch.minimum(surr1, surr2)
    if beta > 0:
        kl = k3_kl(new, _flatten(logp_ref, n, "logp_ref").to(new.dtype))
        per_token = per_token + beta * kl
    elif logp_ref is not None:
        kl = k3_kl(new.detach(), _flatten(logp_ref, n, "logp_ref").to(new.dtype))
    else:
        kl = torch.zeros_like(new)

    lengths = m.sum(dim=1)
    total = lengths.sum().clamp(min=1.0)
    if aggregation == "token":
        loss = (per_token * m).sum() / total
    elif aggregation == "sequence":
        loss = ((per_token * m).sum(dim=1) / lengths.clamp(min=1.0)).mean()
    else:
        denom = float(max_tokens if max_tokens is not None else new.shape[1])
        if denom <= 0:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        loss = (per_token * m).sum() / (n * denom)

    with torch.no_grad():
        clipped = ((ratio > 1.0 + clip_eps) & (adv > 0)) | ((ratio < 1.0 - clip_eps) & (adv < 0))
        stats = {
            "kl": (kl.detach() * m).sum() / total,
            "clip_frac": (clipped.to(new.dtype) * m).sum() / total,
            "ratio_mean": (ratio.detach() * m).sum() / total,
            "num_tokens": lengths.sum(),
        }
    return loss, stats


@dataclass
class PolicyLogProbs:
    """Log-probs of one batch of sampled completions under one policy.

    Attributes:
        slow: ``[N, T]`` log-prob of each sampled slow token (semantic token or the closing ``<|im_end|>``).
        slow_mask: ``[N, T]`` bool, True on real completion tokens.
        fast: ``[N, T, K-1]`` log-prob of each sampled residual code (codebooks 1..K-1; codebook 0 is the
            slow token), aligned with ``slow`` on the frame axis.
        fast_mask: ``[N, T, K-1]`` bool, True on real frames.
    """

    slow: Tensor
    slow_mask: Tensor
    fast: Tensor
    fast_mask: Tensor

    def detach(self) -> PolicyLogProbs:
        return PolicyLogProbs(self.slow.detach(), self.slow_mask, self.fast.detach(), self.fast_mask)


def dual_ar_grpo_loss(
    new: PolicyLogProbs,
    old: PolicyLogProbs | None,
    ref: PolicyLogProbs | None,
    advantages: Tensor,
    gamma_fast: float = 1.0,
    **kwargs,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``L = L_slow + gamma_fast * L_fast`` with the same sequence-level advantage on both streams.

    Args:
        new / old / ref: log-probs under the trained, behaviour and reference policies (see
            :class:`PolicyLogProbs`); ``old=None`` means on-policy, ``ref=None`` means no KL term.
        advantages: ``[N]`` per-sequence advantages.
        gamma_fast: weight of the fast-AR (residual codebook) stream.
        **kwargs: forwarded to :func:`grpo_loss` (``clip_eps``, ``beta``, ``aggregation``, ``max_tokens``).

    Returns:
        ``(loss, stats)`` with ``kl``/``clip_frac`` over both streams (token-weighted) and per-stream
        ``*_slow`` / ``*_fast`` entries.
    """
    loss_s, st_s = grpo_loss(
        new.slow, None if old is None else old.slow, None if ref is None else ref.slow,
        advantages, new.slow_mask, **kwargs,
    )  # fmt: skip
    stats = {f"{k}_slow": v for k, v in st_s.items()}
    loss = loss_s
    if gamma_fast != 0.0 and new.fast.numel() > 0:
        loss_f, st_f = grpo_loss(
            new.fast, None if old is None else old.fast, None if ref is None else ref.fast,
            advantages, new.fast_mask, **kwargs,
        )  # fmt: skip
        stats.update({f"{k}_fast": v for k, v in st_f.items()})
        loss = loss_s + gamma_fast * loss_f
        n_s, n_f = st_s["num_tokens"], st_f["num_tokens"]
        tot = (n_s + n_f).clamp(min=1.0)
        for key in ("kl", "clip_frac"):
            stats[key] = (st_s[key] * n_s + st_f[key] * n_f) / tot
    else:
        stats["kl"], stats["clip_frac"] = st_s["kl"], st_s["clip_frac"]
    stats["loss_slow"] = loss_s.detach()
    return loss, stats


__all__ = ["AGGREGATIONS", "PolicyLogProbs", "dual_ar_grpo_loss", "grpo_loss", "k3_kl"]
