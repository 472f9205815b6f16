"""The cached decode path: `prefill` a prompt into static KV caches, then `decode_frame` once per frame.

Batch layout: prompts are **left-padded** to the longest prompt (L_max). Row b's prompt occupies cache slots
[pad_b, L_max) and frame f is written at slot L_max + f for every row, so one slot index serves the whole
batch (static shapes for CUDA graphs). Rotary positions are per row (`slot - pad_b`), so a row computes
exactly what it would compute alone; the attention mask hides slots < pad_b.

`decode_frame` = sample the slow token from the pending hidden state (constrained to semantic tokens and
`<|im_end|>`), run the K-1 fast steps against a reused (K+1)-slot cache, then one slow step that feeds the
new frame and leaves the next hidden state pending. All state lives in device tensors updated in place:
no host sync inside a frame.

Classifier-free guidance (`SamplingTensors.guided`): the slow AR runs R = 2B rows, rows [0, B) on the
requests' prompts and rows [B, 2B) on their unconditional prompts (`s2train.text.unconditional_prompt`), in
the same forwards. Each frame combines the two rows' slow logits (`s2train.inference.sampling.guide`), samples
one token per request, runs the fast AR on the conditional row's hidden state only, and feeds the chosen
frame to both rows. Everything else (done, lengths, window, codes, log-probs) has B rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from s2train.ar.dual_ar import DualAR
from s2train.inference.kv_cache import DecodeCaches, KVCache
from s2train.inference.sampling import SamplingTensors, guide, repetition_aware, sample, token_logprob

NEG_INF = float("-inf")


@dataclass
class DecodeConsts:
    """Per-request constants on device.

    Attributes:
        allowed_ids: [A] slow tokens allowed in the assistant turn: the semantic range, then `<|im_end|>`.
        slot_range: [S] arange over slow cache slots.
        fast_masks: fast attention masks; entry j: bool [1, 1, Lq, K+1] for the step whose last query is j.
        fast_positions: [K+1] arange.
        cb_invalid: [K, C] True where the shared fast vocabulary exceeds codebook k's size (or None).
        return_logprobs: also compute full-vocabulary log-probs of the sampled tokens.
        is_stop_id: [A] bool, True at the `<|im_end|>` entry of `allowed_ids`.
    """

    allowed_ids: Tensor
    slot_range: Tensor
    fast_masks: list[Tensor]
    fast_positions: Tensor
    cb_invalid: Tensor | None
    return_logprobs: bool
    is_stop_id: Tensor

    @classmethod
    def build(
        cls, model: DualAR, stop_token_id: int, max_len: int, device, return_logprobs: bool
    ) -> DecodeConsts:
        cfg = model.config
        sem = torch.arange(cfg.semantic_start, cfg.semantic_start + cfg.num_semantic, device=device)
        allowed = torch.cat([sem, torch.tensor([stop_token_id], device=device)])
        k = cfg.num_codebooks
        pos = torch.arange(k + 1, device=device)
        causal = pos[None, :] <= pos[:, None]  # [K+1, K+1] query x slot
        masks = [causal[None, None, 0:1]]
        masks.append(causal[None, None, 0:2])  # first fast call: queries 0 and 1
        masks += [causal[None, None, j : j + 1] for j in range(2, k + 1)]
        cb_invalid = None
        if cfg.codebook_sizes is not None:
            sizes = torch.tensor(cfg.codebook_sizes, device=device)
            cb_invalid = torch.arange(cfg.codebook_size, device=device)[None, :] >= sizes[:, None]
        is_stop = torch.zeros(allowed.numel(), dtype=torch.bool, device=device)
        is_stop[-1] = True
        return cls(
            allowed, torch.arange(max_len, device=device), masks, pos, cb_invalid, return_logprobs, is_stop
        )


@dataclass
class DecodeState:
    """Mutable per-batch decode state (all tensors, updated in place by `decode_frame`).

    Attributes:
        hidden: [R, D] slow hidden state at the last fed position (pending: the next frame is sampled from it);
            R = B, or 2B with guidance (unconditional rows last).
        slot: [1] cache slot of the next slow input.  pad: [R] left padding.
        done: [B] row has emitted `<|im_end|>`.  lengths: [B] frames emitted.
        window: [B, W] recent semantic tokens for repetition-aware sampling (-1 = empty).  step: [1].
        codes: [B, K] last frame.  token: [B] last slow token.  valid: [B] last frame is a real frame.
        slow_logprob: [B], fast_logprob: [B, K] log-probs of the last frame's tokens (if requested).
    """

    hidden: Tensor
    slot: Tensor
    pad: Tensor
    done: Tensor
    lengths: Tensor
    window: Tensor
    step: Tensor
    min_frames: Tensor
    codes: Tensor
    token: Tensor
    valid: Tensor
    slow_logprob: Tensor
    fast_logprob: Tensor

    @classmethod
    def allocate(
        cls, batch: int, dim: int, k: int, window: int, dtype, device, guided: bool = False
    ) -> DecodeState:
        z = torch.zeros
        rows = 2 * batch if guided else batch
        return cls(
            hidden=z(rows, dim, dtype=dtype, device=device),
            slot=z(1, dtype=torch.long, device=device),
            pad=z(rows, dtype=torch.long, device=device),
            done=z(batch, dtype=torch.bool, device=device),
            lengths=z(batch, dtype=torch.long, device=device),
            window=torch.full((batch, max(window, 1)), -1, dtype=torch.long, device=device),
            step=z(1, dtype=torch.long, device=device),
            min_frames=z(1, dtype=torch.long, device=device),
            codes=z(batch, k, dtype=torch.long, device=device),
            token=z(batch, dtype=torch.long, device=device),
            valid=z(batch, dtype=torch.bool, device=device),
            slow_logprob=z(batch, device=device),
            fast_logprob=z(batch, k, device=device),
        )

    def tensors(self) -> list[Tensor]:
        return list(vars(self).values())

    def reset(self, hidden: Tensor, pad: Tensor, start_slot: int, min_frames: int = 0) -> None:
        """Start a new request in the same buffers (addresses unchanged). hidden: [R, D]; pad: [R]."""
        self.min_frames.fill_(min_frames)
        self.hidden.copy_(hidden)
        self.pad.copy_(pad)
        self.slot.fill_(start_slot)
        self.done.zero_()
        self.lengths.zero_()
        self.window.fill_(-1)
        self.step.zero_()


def prefill(
    model: DualAR,
    tokens: Tensor,
    codes: Tensor,
    audio_mask: Tensor,
    cache: Sequence[KVCache],
    pad: Tensor | None = None,
    start_slot: int = 0,
) -> Tensor:
    """Run a prompt chunk through the slow AR, writing its KV at slots [start_slot, start_slot + n).

    Args:
        tokens: [B, n]; codes: [B, K, n]; audio_mask: [B, n] (left-padded columns may hold anything).
        cache: one `KVCache` per slow layer with batch B (a row view for a single prompt).
        pad: [B] left padding (slots < pad are never attended); default 0.
        start_slot: slot of the chunk's first column (earlier slots must already be filled).
    Returns:
        hidden: [B, D] final-normed hidden state at the chunk's last column.
    """
    b, n = tokens.shape
    device = tokens.device
    if pad is None:
        pad = torch.zeros(b, dtype=torch.long, device=device)
    slots = torch.arange(start_slot, start_slot + n, device=device)
    positions = (slots[None, :] - pad[:, None]).clamp_min(0)
    slot_range = torch.arange(cache[0].k.shape[2], device=device)
    visible = (slot_range[None, None, :] >= pad[:, None, None]) & (
        slot_range[None, None, :] <= slots[None, :, None]
    )
    # Padded columns attend to themselves only (avoids fully masked rows; their KV is never read).
    visible = visible | (slot_range[None, None, :] == slots[None, :, None])
    out = model(
        tokens, codes, audio_mask, attn_mask=visible[:, None], positions=positions,
        kv_caches=cache, cache_slots=slots, compute_logits=False,
    )  # fmt: skip
    return out.hidden[:, -1]


def decode_frame(
    model: DualAR, state: DecodeState, caches: DecodeCaches, params: SamplingTensors, consts: DecodeConsts
) -> Tensor:
    """Emit one frame per row: slow sample + K-1 fast steps + one slow step (see module docstring).

    With `params.guided` the slow token is sampled from the guided logits of the conditional and
    unconditional rows; the fast AR runs on the conditional row's hidden state; both rows are fed the frame.

    Args:
        state: updated in place (hidden, slot, done, lengths, window, codes, valid, log-probs).
    Returns:
        codes: [B, K] the new frame (`state.codes`); rows with `state.valid` False are padding.
    """
    cfg = model.config
    k = cfg.num_codebooks
    b = state.done.shape[0]
    stop_index = consts.allowed_ids.shape[0] - 1

    # Slow AR token, constrained to the assistant-turn vocabulary (only those head rows are read).
    slow_logits = model.slow.range_logits(
        state.hidden, cfg.semantic_start, cfg.num_semantic, consts.allowed_ids[-1:]
    )  # semantic range as a head view + <|im_end|>
    if params.guided:
        slow_logits = guide(slow_logits[:b], slow_logits[b:], params.cfg_scale)
    hidden = state.hidden[:b]  # the conditional rows
    slow_logits = slow_logits.masked_fill(
        consts.is_stop_id[None] & (state.step < state.min_frames)[:, None], NEG_INF
    )
    idx, full = sample(
        slow_logits, params.temperature, params.top_k, params.top_p, params.greedy,
        params.greedy_only, params.filter_slow, need_full=params.ras_window > 0,
    )  # fmt: skip
    if params.ras_window > 0 and full is not None:
        idx = repetition_aware(idx, full, state.window, params.ras_threshold, params.greedy)
    is_stop = idx == stop_index
    token = consts.allowed_ids[idx]
    q0 = idx.clamp(max=cfg.num_semantic - 1)
    if consts.return_logprobs:
        state.slow_logprob.copy_(token_logprob(model.slow.logits(hidden), token))

    # Fast AR: first call feeds [h, emb(q0)]; later calls feed one code each. Stale slots are masked.
    frame = [q0]
    x = model.fast_inputs(hidden, q0[:, None])
    logits = model.fast(
        x, consts.fast_positions[:2], consts.fast_masks[1], caches.fast, consts.fast_positions[:2]
    )
    fast_lp = [token_logprob(logits[:, 0], q0)] if consts.return_logprobs else []
    for j in range(1, k):
        lj = logits[:, -1]
        if consts.cb_invalid is not None:
            lj = lj.masked_fill(consts.cb_invalid[j], NEG_INF)
        qj, _ = sample(
            lj, params.fast_temperature[:, j], params.fast_top_k[:, j], params.fast_top_p[:, j], params.greedy,
            params.greedy_only, params.filter_fast, need_full=False,
        )  # fmt: skip
        frame.append(qj)
        if consts.return_logprobs:
            fast_lp.append(token_logprob(logits[:, -1], qj))
        if j < k - 1:
            pos = consts.fast_positions[j + 1 : j + 2]
            x = model.fast.code_emb(qj)[:, None].to(x.dtype)
            logits = model.fast(x, pos, consts.fast_masks[j + 1], caches.fast, pos)
    codes = torch.stack(frame, dim=1)
    if consts.return_logprobs:
        state.fast_logprob.copy_(torch.stack(fast_lp, dim=1))

    valid = ~state.done & ~is_stop
    state.lengths.add_(valid.long())
    state.done.logical_or_(is_stop)

    # Slow step on the new frame; a stopped row feeds <|im_end|> as text (its outputs are ignored).
    # With guidance the unconditional rows are fed the same frame.
    rows = 2 if params.guided else 1
    feed_token, feed_codes, feed_audio = token.repeat(rows), codes.repeat(rows, 1), (~is_stop).repeat(rows)
    positions = (state.slot - state.pad)[:, None]
    visible = (consts.slot_range[None, :] >= state.pad[:, None]) & (consts.slot_range[None, :] <= state.slot)
    out = model(
        feed_token[:, None], feed_codes[:, :, None], feed_audio[:, None], attn_mask=visible[:, None, None],
        positions=positions, kv_caches=caches.slow, cache_slots=state.slot, compute_logits=False,
    )  # fmt: skip
    state.hidden.copy_(out.hidden[:, 0])
    w = state.window.shape[1]
    state.window.scatter_(1, (state.step % w).expand(codes.shape[0])[:, None], q0[:, None])
    state.slot.add_(1)
    state.step.add_(1)
    state.codes.copy_(codes)
    state.token.copy_(token)
    state.valid.copy_(valid)
    return state.codes
