"""Dual-AR training losses (pure torch).

Targets follow docs/DESIGN.md: position t predicts `tokens[t+1]` (slow) and, when t+1 is a *target* audio
frame, `codes[:, t+1]` through the fast AR fed with `hidden[t]`. Only positions whose target carries
`loss_mask` contribute, so the system prompt, references, user text and context turns are never trained on.

Total: `lambda_slow * L_slow + lambda_fast * L_fast`, with
`L_fast = sum_k w(k) CE_k / sum_k w(k)` (CE_k averaged over target frames).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def fast_weights(spec: str | Sequence[float], num_codebooks: int, decay: float = 0.8) -> list[float]:
    """Resolve the per-codebook fast-loss weights w(k).

    Args:
        spec: "ones" (pre-training: w(k)=1 for all k incl. k=0), "sft" (w(0)=0, w(k)=decay**(k-1) for k>=1;
            S2 drops k=0 in SFT and decays over k, exact values unpublished), or an explicit list of K floats.
        num_codebooks: K.
        decay: decay factor for "sft".

    Returns:
        K non-negative floats, not all zero.
    """
    if isinstance(spec, str):
        if spec == "ones":
            w = [1.0] * num_codebooks
        elif spec == "sft":
            w = [0.0] + [decay ** (k - 1) for k in range(1, num_codebooks)]
        else:
            raise ValueError(
                f"fast_weights: unknown scheme {spec!r}; use 'ones', 'sft' or a list of K floats"
            )
    else:
        w = [float(x) for x in spec]
        if len(w) != num_codebooks:
            raise ValueError(f"fast_weights: got {len(w)} weights, model has K={num_codebooks} codebooks")
    if any(x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"fast_weights must be >= 0 and not all zero, got {w}")
    return w


def _ce_and_acc(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean CE and accuracy of `pred [N, V]` vs `target [N]`; zero loss (in the graph) when N == 0."""
    n = torch.tensor(target.numel(), device=pred.device)
    if target.numel() == 0:
        zero = pred.sum() * 0.0
        return zero, zero.detach(), n
    loss = F.cross_entropy(pred.float(), target)
    acc = (pred.argmax(-1) == target).float().mean()
    return loss, acc.detach(), n


def slow_loss(logits: Tensor, tokens: Tensor, loss_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Next-token CE where the target position has `loss_mask`.

    Args:
        logits: [B, L, V]; tokens: [B, L]; loss_mask: [B, L] bool (on targets).

    Returns:
        (loss scalar, accuracy scalar, number of target tokens).
    """
    sel = loss_mask[:, 1:].bool()
    return _ce_and_acc(logits[:, :-1][sel], tokens[:, 1:][sel])


def selected_slow_logits(
    hidden: Tensor, tokens: Tensor, loss_mask: Tensor, logits_fn: Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor]:
    """Logits only where the next token is a target: avoids materializing `[B, L, V]` for big vocabularies.

    Args:
        hidden: [B, L, D]; tokens: [B, L]; loss_mask: [B, L] bool; logits_fn: hidden [N, D] -> [N, V].

    Returns:
        (logits [N, V], targets [N]).
    """
    sel = loss_mask[:, 1:].bool()
    return logits_fn(hidden[:, :-1][sel]), tokens[:, 1:][sel]


def fast_targets(
    hidden: Tensor, codes: Tensor, audio_mask: Tensor, loss_mask: Tensor
) -> tuple[Tensor, Tensor]:
    """Gather fast-AR inputs: `hidden[t]` and the target frame `codes[:, t+1]` for target audio frames.

    Args:
        hidden: [B, L, D]; codes: [B, K, L]; audio_mask, loss_mask: [B, L] bool.

    Returns:
        (h [N, D], frames [N, K]).
    """
    sel = (audio_mask[:, 1:] & loss_mask[:, 1:]).bool()
    h = hidden[:, :-1][sel]
    frames = codes[:, :, 1:].transpose(1, 2)[sel]
    return h, frames


def fast_loss(fast_logits: Tensor, frames: Tensor, weights: Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted per-codebook CE.

    Args:
        fast_logits: [N, K, C]; frames: [N, K] targets; weights: K floats.

    Returns:
        (weighted loss scalar, per-codebook CE [K] (detached), per-codebook accuracy [K]).
    """
    n, k, c = fast_logits.shape
    w = torch.as_tensor(list(weights), dtype=torch.float32, device=fast_logits.device)
    if n == 0:
        zero = fast_logits.sum() * 0.0
        return zero, torch.zeros(k, device=fast_logits.device), torch.zeros(k, device=fast_logits.device)
    ce = F.cross_entropy(fast_logits.float().reshape(n * k, c), frames.reshape(n * k), reduction="none")
    ce = ce.view(n, k).mean(0)  # [K]
    loss = (ce * w).sum() / w.sum()
    acc = (fast_logits.argmax(-1) == frames).float().mean(0)
    return loss, ce.detach(), acc.detach()


def dual_ar_loss(
    logits: Tensor | None,
    hidden: Tensor,
    batch: dict[str, Tensor],
    fast_fn: Callable[[Tensor, Tensor], Tensor],
    weights: Sequence[float],
    lambda_slow: float = 1.0,
    lambda_fast: float = 1.0,
    max_fast_frames: int | None = None,
    logits_fn: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Slow + fast loss for one batch.

    Args:
        logits: [B, L, V] slow logits, or None to compute them only at target positions with `logits_fn`.
        hidden: [B, L, D] final-normed slow hidden states.
        batch: `tokens [B, L]`, `codes [B, K, L]`, `audio_mask [B, L]`, `loss_mask [B, L]`.
        fast_fn: `DualAR.fast_forward` (hidden [N, D], codes [N, K]) -> logits [N, K, C].
        weights: w(k), K floats (see `fast_weights`).
        lambda_slow, lambda_fast: term weights.
        max_fast_frames: optional cap on frames fed to the fast AR (random subset) to bound memory.
        logits_fn: hidden [N, D] -> logits [N, V] (`DualAR.slow.logits`), used when `logits` is None.

    Returns:
        dict with `loss`, `loss_slow`, `loss_fast`, `acc_slow`, `loss_cb{k}`, `acc_cb{k}`, `n_frames`,
        `n_tokens` (all tensors; only `loss` carries gradients).
    """
    tokens, codes = batch["tokens"], batch["codes"]
    audio_mask, loss_mask = batch["audio_mask"].bool(), batch["loss_mask"].bool()
    if logits is None:
        if logits_fn is None:
            raise ValueError("dual_ar_loss: pass logits [B, L, V] or logits_fn")
        ls, acc_s, n_tok = _ce_and_acc(*selected_slow_logits(hidden, tokens, loss_mask, logits_fn))
    else:
        ls, acc_s, n_tok = slow_loss(logits, tokens, loss_mask)
    h, frames = fast_targets(hidden, codes, audio_mask, loss_mask)
    if max_fast_frames is not None and h.shape[0] > max_fast_frames:
        idx = torch.randperm(h.shape[0], device=h.device)[:max_fast_frames]
        h, frames = h[idx], frames[idx]
    if h.shape[0] > 0:
        lf, ce, acc_k = fast_loss(fast_fn(h, frames), frames, weights)
    else:
        # Only possible for a batch without target frames (every training item has some).
        k = codes.shape[1]
        lf = hidden.sum() * 0.0
        ce = torch.zeros(k, device=hidden.device)
        acc_k = torch.zeros(k, device=hidden.device)
    out = {
        "loss": lambda_slow * ls + lambda_fast * lf,
        "loss_slow": ls.detach(),
        "loss_fast": lf.detach(),
        "acc_slow": acc_s,
        "n_tokens": n_tok.detach().float(),
        "n_frames": torch.tensor(float(h.shape[0]), device=hidden.device),
    }
    for i in range(ce.shape[0]):
        out[f"loss_cb{i}"] = ce[i]
        out[f"acc_cb{i}"] = acc_k[i]
    return out

