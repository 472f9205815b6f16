"""Sampling on device: per-sequence (slow AR) and per-codebook (fast AR) settings held in tensors.

Nothing here synchronizes with the host, so the whole frame can be captured in a CUDA graph. Categorical
draws use the exponential race (argmax of p / Exp(1)), which is exact and graph-safe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

NEG_INF = float("-inf")


@dataclass
class SamplingParams:
    """User-facing sampling settings for one request.

    Attributes:
        do_sample: False = greedy decoding (temperature/top-p/top-k ignored).
        temperature: > 0 when sampling.
        top_p: nucleus mass in (0, 1]; 1 disables.
        top_k: keep the k best tokens; 0 disables.
        fast_temperature / fast_top_p / fast_top_k: fast-AR settings, a single value or one per codebook
            (length K, entry 0 unused since q0 comes from the slow AR); None = same as the slow AR.
        ras_window: repetition-aware sampling window over recent semantic tokens (0 disables).
        ras_threshold: if the sampled semantic token fills more than this fraction of the window, it is
            re-drawn from the full (temperature-only) distribution (VALL-E 2 style).
        cfg_scale: classifier-free guidance on the transcript; 1 = off. Otherwise the engine decodes the
            request next to its unconditional prompt (`s2train.text.unconditional_prompt`) and samples the
            slow token from `uncond + cfg_scale * (cond - uncond)` (see `guide`); 0 = unconditional only.
            Needs a model trained with `data.text_dropout` > 0 to mean anything.
    """

    do_sample: bool = True
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 0
    fast_temperature: float | Sequence[float] | None = None
    fast_top_p: float | Sequence[float] | None = None
    fast_top_k: int | Sequence[int] | None = None
    ras_window: int = 16
    ras_threshold: float = 0.25
    cfg_scale: float = 1.0

    def validate(self, num_codebooks: int) -> SamplingParams:
        """Raise ValueError naming the bad field; returns self."""

        def per_cb(name: str, value, default):
            vals = default if value is None else value
            vals = list(vals) if isinstance(vals, list | tuple) else [vals] * num_codebooks
            if len(vals) != num_codebooks:
                raise ValueError(f"SamplingParams.{name}: {len(vals)} values for {num_codebooks} codebooks")
            return vals

        temps = [self.temperature] + per_cb("fast_temperature", self.fast_temperature, self.temperature)
        tops = [self.top_p] + per_cb("fast_top_p", self.fast_top_p, self.top_p)
        ks = [self.top_k] + per_cb("fast_top_k", self.fast_top_k, self.top_k)
        if self.do_sample:
            for t in temps:
                if not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
                    raise ValueError(f"SamplingParams: temperature must be > 0 when sampling, got {t!r}")
        for p in tops:
            if not isinstance(p, int | float) or not 0.0 < p <= 1.0:
                raise ValueError(f"SamplingParams: top_p must be in (0, 1], got {p!r}")
        for k in ks:
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                raise ValueError(f"SamplingParams: top_k must be an int >= 0, got {k!r}")
        if not isinstance(self.ras_window, int) or self.ras_window < 0:
            raise ValueError(f"SamplingParams.ras_window must be an int >= 0, got {self.ras_window!r}")
        if not 0.0 <= self.ras_threshold <= 1.0:
            raise ValueError(f"SamplingParams.ras_threshold must be in [0, 1], got {self.ras_threshold!r}")
        c = self.cfg_scale
        if not isinstance(c, int | float) or isinstance(c, bool) or not math.isfinite(c) or c < 0:
            raise ValueError(f"SamplingParams.cfg_scale must be a finite number >= 0, got {c!r}")
        return self

    def fast_values(self, num_codebooks: int) -> tuple[list[float], list[float], list[int]]:
        """Per-codebook (temperature, top_p, top_k) for the fast AR."""

        def per_cb(value, default):
            vals = default if value is None else value
            return list(vals) if isinstance(vals, list | tuple) else [vals] * num_codebooks

        return (
            [float(v) for v in per_cb(self.fast_temperature, self.temperature)],
            [float(v) for v in per_cb(self.fast_top_p, self.top_p)],
            [int(v) for v in per_cb(self.fast_top_k, self.top_k)],
        )


@dataclass
class SamplingTensors:
    """Device tensors for a batch of B rows (see `SamplingParams`).

    Attributes:
        temperature, top_p, top_k, greedy: [B] slow-AR settings.
        fast_temperature, fast_top_p, fast_top_k: [B, K]; fast_greedy: [B].
        ras_threshold: [B] max count of a token in the window (as a float count); ras_window: static int.
        cfg_scale: [B] classifier-free guidance scale (1 = off for that row).
        greedy_only, filter_slow, filter_fast: static flags (part of the captured graph) that skip work no
            row needs: sampling when every row is greedy, the top-k/top-p sort when no row filters.
        guided: static flag, some row has cfg_scale != 1: the decode batch carries an unconditional row per
            row (see `s2train.inference.engine`).
    """

    temperature: Tensor
    top_p: Tensor
    top_k: Tensor
    greedy: Tensor
    fast_temperature: Tensor
    fast_top_p: Tensor
    fast_top_k: Tensor
    ras_threshold: Tensor
    cfg_scale: Tensor
    ras_window: int
    greedy_only: bool = False
    filter_slow: bool = True
    filter_fast: bool = True
    guided: bool = False

    def flags(self) -> dict:
        return {"ras_window": self.ras_window, "greedy_only": self.greedy_only, "filter_slow": self.filter_slow,
                "filter_fast": self.filter_fast, "guided": self.guided}  # fmt: skip

    @classmethod
    def build(
        cls, params: Sequence[SamplingParams], num_codebooks: int, device: torch.device
    ) -> SamplingTensors:
        """Stack per-row params (already validated) into tensors on `device`."""
        fast = [p.fast_values(num_codebooks) for p in params]
        window = max(p.ras_window for p in params)

        def t(values, dtype):
            return torch.tensor(values, dtype=dtype, device=device)

        return cls(
            temperature=t([p.temperature if p.do_sample else 1.0 for p in params], torch.float32),
            top_p=t([float(p.top_p) for p in params], torch.float32),
            top_k=t([p.top_k for p in params], torch.long),
            greedy=t([not p.do_sample for p in params], torch.bool),
            fast_temperature=t(
                [[x if p.do_sample else 1.0 for x in f[0]] for p, f in zip(params, fast)], torch.float32
            ),
            fast_top_p=t([f[1] for f in fast], torch.float32),
            fast_top_k=t([f[2] for f in fast], torch.long),
            # Rows with RAS off get a threshold no count can exceed.
            ras_threshold=t(
                [p.ras_threshold * p.ras_window if p.ras_window else 1e9 for p in params], torch.float32
            ),
            cfg_scale=t([float(p.cfg_scale) for p in params], torch.float32),
            ras_window=window,
            guided=any(p.cfg_scale != 1 for p in params),
            greedy_only=all(not p.do_sample for p in params),
            filter_slow=any(p.do_sample and (p.top_k > 0 or p.top_p < 1.0) for p in params),
            filter_fast=any(
                p.do_sample and (any(k > 0 for k in f[2]) or any(q < 1.0 for q in f[1]))
                for p, f in zip(params, fast)
            ),  # fmt: skip
        )

    def repeat_interleave(self, g: int) -> SamplingTensors:
        """Each row repeated g times (G samples per prompt)."""
        fields = {k: v.repeat_interleave(g, 0) for k, v in vars(self).items() if isinstance(v, Tensor)}
        return SamplingTensors(**fields, **self.flags())


def filter_logits(logits: Tensor, top_k: Tensor, top_p: Tensor) -> Tensor:
    """Mask logits outside the top-k / nucleus sets (one sort for both).

    Args:
        logits: [N, V] float (already temperature-scaled).
        top_k: [N] long, 0 = off.  top_p: [N] float in (0, 1], 1 = off.
    Returns:
        [N, V] with removed entries at -inf; the best token is always kept.
    """
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    rank = torch.arange(logits.shape[-1], device=logits.device)[None, :]
    drop = (top_k[:, None] > 0) & (rank >= top_k[:, None])
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop = drop | (mass_before >= top_p[:, None])
    drop[:, 0] = False
    drop = drop.scatter(1, order, drop)
    return logits.masked_fill(drop, NEG_INF)


def draw(probs: Tensor) -> Tensor:
    """One categorical draw per row via the exponential race. probs: [N, V] -> [N] long."""
    noise = torch.empty_like(probs).exponential_(1.0)
    return (probs / noise).argmax(dim=-1)


def sample(
    logits: Tensor,
    temperature: Tensor,
    top_k: Tensor,
    top_p: Tensor,
    greedy: Tensor,
    greedy_only: bool = False,
    use_filter: bool = True,
    need_full: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Sample one token per row.

    Args:
        logits: [N, V] raw logits (masked entries at -inf).
        temperature, top_k, top_p, greedy: [N].
        greedy_only / use_filter / need_full: static shortcuts (argmax only; skip the top-k/top-p sort;
            skip the full distribution).
    Returns:
        (token [N] long, full temperature-only probabilities [N, V] or None) - the latter for
        repetition-aware resampling.
    """
    logits = logits.float()
    best = logits.argmax(dim=-1)
    if greedy_only:
        return best, None
    scaled = logits / temperature[:, None]
    full = scaled.softmax(dim=-1) if (need_full or not use_filter) else None
    probs = filter_logits(scaled, top_k, top_p).softmax(dim=-1) if use_filter else full
    token = torch.where(greedy, best, draw(probs))
    return token, full


def guide(cond: Tensor, uncond: Tensor, scale: Tensor) -> Tensor:
    """Classifier-free guidance on slow-AR logits: `uncond + scale * (cond - uncond)`, in float32.

    Combined as raw logits. Log-softmax space gives the same distribution: log-softmax subtracts a per-row
    constant from each side, and a per-row constant shifts the combination without changing its softmax,
    top-k or top-p sets. Rows with scale 1 return `cond` exactly (no rounding), scale 0 returns `uncond`.

    Args:
        cond, uncond: [N, V] logits of the conditional and unconditional prompts (finite).
        scale: [N] float.
    Returns:
        [N, V] float32 guided logits.
    """
    cond, uncond = cond.float(), uncond.float()
    mixed = uncond + scale[:, None] * (cond - uncond)
    return torch.where((scale == 1)[:, None], cond, mixed)


def repetition_aware(
    token: Tensor, full_probs: Tensor, window: Tensor, threshold: Tensor, greedy: Tensor
) -> Tensor:
    """Re-draw tokens that repeat too often in the recent window from the full distribution.

    Args:
        token: [N] candidate (in the same index space as `window`).
        full_probs: [N, V] temperature-only probabilities.
        window: [N, W] recent tokens (-1 = empty).
        threshold: [N] counts above which the candidate is re-drawn.
        greedy: [N] rows never re-drawn.
    Returns:
        [N] tokens.
    """
    count = (window == token[:, None]).sum(dim=-1).float()
    redo = (count > threshold) & ~greedy
    return torch.where(redo, draw(full_probs), token)


def token_logprob(logits: Tensor, token: Tensor) -> Tensor:
    """log softmax(logits)[token] at temperature 1 (what a training forward computes). [N, V], [N] -> [N]."""
    return logits.float().log_softmax(dim=-1).gather(-1, token[:, None])[:, 0]
