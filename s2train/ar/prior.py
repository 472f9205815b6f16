"""Text-to-audio alignment helpers for training the slow AR to read its transcript (pure torch).

A decoder-only TTS model can lower its codebook-0 loss a long way as an audio language model and learn the
text-to-audio alignment late or never. Two training-only levers live here:

- `attention_prior_bias`: an additive bias on the attention *logits* of a few heads (the forward-pass prior
  of the RAD-TTS / T5-TTS line). The frame being predicted sees the transcript token at its relative
  position from step 0, so later layers learn to read it; the bias is annealed out and never used at
  inference or exported.
- `alignment_prior_loss`: a loss on those heads' unbiased attention pulling it toward the same prior, so the
  heads keep aligning on their own once the bias is gone (guided attention in the spirit of DC-TTS).

Both use the same prior: at the query that predicts target frame f of T, transcript token n of N sits at
relative position `u = (n + 0.5) / N`, the frame at `v = (f + 0.5) / T`, and
`log G(n) = -(u - v)^2 / (2 sigma^2)`. `alignment_stats` measures what the heads do without the bias.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class AttnPrior:
    """Settings of the forward-pass attention prior (`module.attn_prior`).

    Attributes:
        heads: the first `heads` query heads of each chosen layer are biased.
        layers: slow-AR layer indices, or None for every layer.
        sigma: width of the Gaussian prior, in units of the whole transcript / utterance.
        floor: bias floor (log-prior values below it are clamped) and the bias on every non-transcript key.
        hold_steps: full weight up to this optimizer step.
        anneal_steps: the weight falls linearly to 0 by this step (>= hold_steps) and stays 0 after.
    """

    heads: int = 2
    layers: tuple[int, ...] | None = None
    sigma: float = 0.1
    floor: float = -30.0
    hold_steps: int = 2000
    anneal_steps: int = 4000

    @classmethod
    def from_config(cls, cfg: Mapping | None, n_layers: int, n_heads: int) -> AttnPrior | None:
        """Validated settings from a config mapping (None or `{}` = off); errors name the bad key."""
        if not cfg:
            return None
        d = dict(cfg)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"module.attn_prior: unknown key(s) {sorted(unknown)}; known: {list(cls.__dataclass_fields__)}"
            )
        if d.get("layers") is not None:
            d["layers"] = tuple(int(i) for i in d["layers"])
        p = cls(**d)
        if not 1 <= p.heads <= n_heads:
            raise ValueError(f"module.attn_prior.heads={p.heads} must be in [1, {n_heads}] (slow-AR heads)")
        if p.layers is not None and (not p.layers or any(not 0 <= i < n_layers for i in p.layers)):
            raise ValueError(f"module.attn_prior.layers={list(p.layers)} must be indices in [0, {n_layers})")
        if not (p.sigma > 0 and p.floor < 0 and 0 <= p.hold_steps <= p.anneal_steps):
            raise ValueError(
                f"module.attn_prior: need sigma > 0 (got {p.sigma}), floor < 0 (got {p.floor}) and "
                f"0 <= hold_steps <= anneal_steps (got {p.hold_steps}, {p.anneal_steps})"
            )
        return p

    def weight(self, step: int) -> float:
        """Bias weight at optimizer step `step`: 1 to `hold_steps`, linear to 0 at `anneal_steps`."""
        if step <= self.hold_steps:
            return 1.0
        if step >= self.anneal_steps:
            return 0.0
        return 1.0 - (step - self.hold_steps) / (self.anneal_steps - self.hold_steps)


def frame_text_coords(batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Where the transcript and the target frames are, in relative units.

    Args:
        batch: `text_mask`, `audio_mask`, `loss_mask` [B, L] (see `s2train.text.prompt.Prompt`).
    Returns:
        text [B, L] bool (transcript tokens), query [B, L] bool (position p predicts a target frame at p + 1),
        u [B, L] (relative transcript position, meaningful where `text`), v [B, L] (relative position of the
        frame that query p predicts, meaningful where `query`).
    """
    if "text_mask" not in batch:
        raise ValueError("the batch has no text_mask (build prompts with s2train.text.build_prompt)")
    text = batch["text_mask"].bool()
    target = batch["loss_mask"].bool() & batch["audio_mask"].bool()
    query = torch.zeros_like(target)
    query[:, :-1] = target[:, 1:]
    n_text = text.sum(1, keepdim=True).clamp_min(1).float()
    n_frames = target.sum(1, keepdim=True).clamp_min(1).float()
    u = (text.long().cumsum(1) - 0.5) / n_text
    v = torch.zeros_like(u)
    v[:, :-1] = (target.long().cumsum(1)[:, 1:] - 0.5) / n_frames
    return text, query, u, v


def _log_prior(u: Tensor, v: Tensor, sigma: float) -> Tensor:
    """[B, L(query), L(key)] log of the Gaussian prior (without its text mask)."""
    return -((u[:, None, :] - v[:, :, None]) ** 2) / (2 * sigma**2)


def attention_prior_bias(
    batch: Mapping[str, Tensor], prior: AttnPrior, n_heads: int, weight: float
) -> Tensor:
    """Additive attention-logit bias for the forward pass.

    Rows of frame queries of items that have a transcript get `weight * max(log G, floor)` on transcript keys
    and `weight * floor` on every other key, for the first `prior.heads` heads; every other entry is 0 (the
    causal mask is applied on top by the model).

    Args:
        batch: see `frame_text_coords`. n_heads: the slow AR's query heads. weight: schedule value in [0, 1].
    Returns:
        float32 [B, n_heads, L, L].
    """
    text, query, u, v = frame_text_coords(batch)
    b, n = text.shape
    rows = query & text.any(1, keepdim=True)  # an item whose text was dropped gets no bias
    logp = _log_prior(u, v, prior.sigma).clamp_min(prior.floor)
    bias = torch.where(text[:, None, :], logp, torch.full_like(logp, prior.floor))
    bias = bias * rows[:, :, None] * weight
    out = bias.new_zeros(b, n_heads, n, n)
    out[:, : prior.heads] = bias[:, None]
    return out


def alignment_prior_loss(
    q: Tensor, k: Tensor, batch: Mapping[str, Tensor], heads: int = 1, sigma: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Alignment-prior loss on the unbiased attention of a few heads of one layer.

    `-log(sum_n A(f, n) G(n))` with A the head's full causal attention (over every key, so the head is also
    pushed to attend to the text at all), averaged over heads and frame queries.

    Args:
        q: [B, H, L, hd] rotated queries of one layer; k: [B, Hkv, L, hd] its rotated keys (GQA allowed).
        batch: see `frame_text_coords`.
        heads: how many query heads (the first ones) are guided.
        sigma: width of the prior in units of the whole transcript / utterance.
    Returns:
        (loss, mass): the loss (a scalar with gradients) and the guided heads' mean attention mass on the
        transcript at frame queries (detached; near 0 means the heads ignore the text).
    """
    attn = _unbiased_attention(q, k, heads)
    text, query, u, v = frame_text_coords(batch)
    prior = torch.exp(_log_prior(u, v, sigma)) * text[:, None, :]  # [B, L, L]
    hit = (attn * prior[:, None]).sum(-1)  # [B, heads, L]
    mass = (attn * text[:, None, None, :]).sum(-1)
    sel = (query & text.any(1, keepdim=True))[:, None, :].expand_as(hit)
    if not sel.any():
        return q.sum() * 0.0, torch.zeros((), device=q.device)
    loss = -torch.log(hit[sel] + 1e-6).mean()
    return loss, mass[sel].mean().detach()


def _unbiased_attention(q: Tensor, k: Tensor, heads: int) -> Tensor:
    """Causal softmax attention [B, heads, L, L] of the first `heads` query heads, in fp32."""
    b, h, n, hd = q.shape
    heads = min(heads, h)
    kv_index = torch.arange(heads, device=q.device) // (h // k.shape[1])
    scores = q[:, :heads].float() @ k[:, kv_index].float().transpose(-1, -2) / math.sqrt(hd)
    causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1)


@torch.no_grad()
def alignment_stats(q: Tensor, k: Tensor, batch: Mapping[str, Tensor], heads: int) -> dict[str, Tensor]:
    """Does a layer's first `heads` heads align on their own (attention computed without any bias)?

    Returns (detached scalars, means over heads and items with a transcript):
        `mass`: attention mass on the transcript at frame queries.
        `monotonic`: fraction of consecutive frame queries whose argmax transcript token does not move back.
        `diag_err`: mean |u(argmax) - v|, the distance of the attended token from the diagonal (0 = on it,
            ~0.33 for a uniformly random token).
    """
    attn = _unbiased_attention(q, k, heads)  # [B, h, L, L]
    text, query, u, v = frame_text_coords(batch)
    rows = query & text.any(1, keepdim=True)
    zero = torch.zeros((), device=q.device)
    if not rows.any():
        return {"mass": zero, "monotonic": zero, "diag_err": zero}
    mass = (attn * text[:, None, None, :]).sum(-1)  # [B, h, L]
    on_text = attn.masked_fill(~text[:, None, None, :], -1.0)
    arg = on_text.argmax(-1)  # [B, h, L] key index of the most-attended transcript token
    u_arg = torch.gather(u[:, None, :].expand_as(arg), 2, arg)
    err = (u_arg - v[:, None, :]).abs()
    sel = rows[:, None, :].expand_as(mass)
    # consecutive frame queries: both p and p + 1 are frame rows
    pair = (rows[:, :-1] & rows[:, 1:])[:, None, :].expand(-1, arg.shape[1], -1)
    forward = arg[:, :, 1:] >= arg[:, :, :-1]
    mono = forward[pair].float().mean() if pair.any() else zero
    return {"mass": mass[sel].mean(), "monotonic": mono, "diag_err": err[sel].mean()}
