"""Teacher-forced log-probs of sampled completions under a Dual-AR policy.

The rollout engine (``s2train.inference``) samples; this module only re-scores the sampled (prompt +
completion) sequences with one ``DualAR.forward`` + one ``DualAR.fast_forward`` call, so the gradient flows
through exactly the computation training uses. There is no decode loop here.

Layout of one packed row: ``[prompt (L_p) | frame_0 .. frame_{T-1} | <|im_end|> (if the model stopped)]``.
At a frame position ``tokens = semantic_start + codes[0]`` and ``audio_mask`` is True (DESIGN.md). Position
``t`` predicts ``tokens[t+1]`` (slow) and, for a frame at ``t+1``, ``codes[:, t+1]`` from ``hidden[t]`` (fast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from s2train.rl.loss import PolicyLogProbs


@dataclass
class PackedCompletions:
    """Right-padded (prompt + completion) rows ready for a teacher-forced forward.

    Attributes:
        tokens: ``[N, L]`` token ids (pad id after the end of each row).
        codes: ``[N, K, L]`` codebook ids (0 at text and pad positions).
        audio_mask: ``[N, L]`` bool, True at audio positions (reference frames and completion frames).
        start: ``[N]`` index of the first completion position (= prompt length).
        num_frames: ``[N]`` completion frames per row.
        ended: ``[N]`` bool, True when the row ends with ``<|im_end|>`` (the model stopped by itself).
    """

    tokens: Tensor
    codes: Tensor
    audio_mask: Tensor
    start: Tensor
    num_frames: Tensor
    ended: Tensor

    def to(self, device: torch.device | str) -> PackedCompletions:
        return PackedCompletions(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def pack_completions(
    prompt_tokens: Sequence[Tensor],
    prompt_codes: Sequence[Tensor],
    prompt_audio_mask: Sequence[Tensor],
    completion_codes: Sequence[Tensor],
    ended: Sequence[bool],
    semantic_start: int,
    eos_id: int,
    pad_id: int,
) -> PackedCompletions:
    """Concatenate each prompt with its sampled completion and right-pad the batch.

    Args:
        prompt_tokens: N tensors ``[L_p]``.
        prompt_codes: N tensors ``[K, L_p]``.
        prompt_audio_mask: N bool tensors ``[L_p]``.
        completion_codes: N tensors ``[K, T]`` of sampled codes (T may be 0).
        ended: per row, whether generation emitted ``<|im_end|>`` (else it hit ``max_frames``).
        semantic_start: token id of ``<|semantic:0|>``.
        eos_id: token id of ``<|im_end|>``.
        pad_id: token id used for padding.

    Returns:
        :class:`PackedCompletions` with N rows.
    """
    n = len(prompt_tokens)
    if not (len(prompt_codes) == len(prompt_audio_mask) == len(completion_codes) == len(ended) == n):
        raise ValueError(
            "prompt_tokens, prompt_codes, prompt_audio_mask, completion_codes, ended differ in length"
        )
    if n == 0:
        raise ValueError("no completions to pack")
    k = prompt_codes[0].shape[0]
    rows = []
    for i in range(n):
        tok, cod, am, comp = (
            prompt_tokens[i],
            prompt_codes[i],
            prompt_audio_mask[i].bool(),
            completion_codes[i],
        )
        if comp.dim() != 2 or comp.shape[0] != k or cod.shape != (k, tok.shape[0]):
            raise ValueError(
                f"row {i}: completion codes {tuple(comp.shape)} / prompt codes {tuple(cod.shape)} do not match K={k}"
            )
        comp = comp.to(torch.long)
        t = comp.shape[1]
        c_tok = semantic_start + comp[0]
        c_am = torch.ones(t, dtype=torch.bool)
        c_cod = comp
        if ended[i]:
            c_tok = torch.cat([c_tok, torch.tensor([eos_id])])
            c_am = torch.cat([c_am, torch.zeros(1, dtype=torch.bool)])
            c_cod = torch.cat([c_cod, torch.zeros(k, 1, dtype=torch.long)], dim=1)
        rows.append(
            (
                torch.cat([tok.long().cpu(), c_tok.cpu()]),
                torch.cat([cod.long().cpu(), c_cod.cpu()], dim=1),
                torch.cat([am.cpu(), c_am.cpu()]),
            )
        )
    length = max(r[0].shape[0] for r in rows)
    tokens = torch.full((n, length), pad_id, dtype=torch.long)
    codes = torch.zeros(n, k, length, dtype=torch.long)
    audio_mask = torch.zeros(n, length, dtype=torch.bool)
    for i, (tk, cd, am) in enumerate(rows):
        tokens[i, : tk.shape[0]] = tk
        codes[i, :, : tk.shape[0]] = cd
        audio_mask[i, : tk.shape[0]] = am
    return PackedCompletions(
        tokens=tokens,
        codes=codes,
        audio_mask=audio_mask,
        start=torch.tensor([t.shape[0] for t in prompt_tokens], dtype=torch.long),
        num_frames=torch.tensor([c.shape[1] for c in completion_codes], dtype=torch.long),
        ended=torch.tensor([bool(e) for e in ended], dtype=torch.bool),
    )


def _slow_logprobs(
    model, hidden: Tensor, out_logits: Tensor | None, targets: Tensor, eos_id: int | None, temperature: float
) -> Tensor:
    """Log-probs of ``targets [N, S]`` from the slow head at the selected positions ``hidden [N, S, D]``.

    Only the selected rows go through the output head (``model.slow.logits``), and with ``eos_id`` only the
    columns the sampler may emit in a voice turn (semantic range + ``<|im_end|>``): ``[N, S, C0+1]``
    instead of ``[N, L, V]`` logits, which matters at a 155k vocabulary.
    """
    cfg = model.config
    head = getattr(getattr(model, "slow", None), "logits", None)
    if eos_id is None:
        logits = head(hidden) if head is not None else out_logits
        return torch.gather(
            F.log_softmax(logits.float() / temperature, dim=-1), -1, targets.unsqueeze(-1)
        ).squeeze(-1)
    allowed = torch.cat(
        [
            torch.arange(cfg.semantic_start, cfg.semantic_start + cfg.num_semantic, device=targets.device),
            torch.tensor([eos_id], device=targets.device),
        ]
    )
    if head is not None:
        logits = head(hidden, token_ids=allowed)
    else:
        logits = out_logits.index_select(-1, allowed)
    idx = torch.where(targets == eos_id, cfg.num_semantic, targets - cfg.semantic_start)
    idx = idx.clamp(0, cfg.num_semantic)  # padded columns hold other ids; they are masked by the caller
    return torch.gather(F.log_softmax(logits.float() / temperature, dim=-1), -1, idx.unsqueeze(-1)).squeeze(
        -1
    )


def _constrain_fast(logits: Tensor, cfg) -> Tensor:
    """Mask the unused tail of the shared fast vocabulary per codebook (``codebook_sizes``)."""
    if not getattr(cfg, "codebook_sizes", None):
        return logits
    sizes = torch.tensor(cfg.codebook_sizes, device=logits.device)
    valid = torch.arange(logits.shape[-1], device=logits.device)[None, :] < sizes[:, None]  # [K, C]
    return logits.masked_fill(~valid, float("-inf"))


def completion_logprobs(
    model: torch.nn.Module,
    packed: PackedCompletions,
    temperature: float = 1.0,
    eos_id: int | None = None,
) -> PolicyLogProbs:
    """Log-probs of the sampled slow tokens and residual codes of each completion.

    Args:
        model: a ``DualAR`` (``forward(tokens, codes, audio_mask) -> (logits[B,L,V], hidden[B,L,D])``,
            ``fast_forward(hidden[M,D], codes[M,K]) -> logits[M,K,C]``).
        packed: rows from :func:`pack_completions` on the model's device.
        temperature: the sampling temperature; logits are divided by it so that the scored distribution is
            the one the rollouts were drawn from (top-p truncation is not modelled).
        eos_id: ``<|im_end|>`` id; when given, slow logits are restricted to the semantic range + EOS and
            fast logits to each codebook's size, as the sampler does, so ratios compare like with like.

    Returns:
        :class:`PolicyLogProbs` with ``S = max(num_frames + ended)`` columns; gradients flow to the model.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    slow_head = hasattr(getattr(model, "slow", None), "logits")
    if slow_head:  # hidden states only; the head runs on the completion positions below
        out = model(packed.tokens, packed.codes, packed.audio_mask, compute_logits=False)
    else:
        out = model(packed.tokens, packed.codes, packed.audio_mask)
    hidden = out.hidden
    n, length = packed.tokens.shape
    k = packed.codes.shape[1]
    device = packed.tokens.device
    slow_len = packed.num_frames + packed.ended.long()
    s = max(int(slow_len.max()), 1)
    j = torch.arange(s, device=device).unsqueeze(0)  # [1, S]
    slow_mask = j < slow_len.unsqueeze(1)  # [N, S]
    fast_mask_2d = j < packed.num_frames.unsqueeze(1)
    # Positions of the completion tokens; padded columns are clamped to a valid index and masked out.
    pos = (packed.start.unsqueeze(1) + j).clamp(max=length - 1)
    prev = (pos - 1).clamp(min=0)
    rows = torch.arange(n, device=device).unsqueeze(1).expand(n, s)

    targets = packed.tokens[rows, pos]  # [N, S]
    out_logits = None if slow_head else out.logits[rows, prev]
    slow = _slow_logprobs(model, hidden[rows, prev], out_logits, targets, eos_id, temperature)
    # where() rather than a product: a masked column may hold -inf under the constraint, and -inf * 0 = nan.
    slow = torch.where(slow_mask, slow, torch.zeros_like(slow))

    fast = torch.zeros(n, s, max(k - 1, 0), dtype=slow.dtype, device=device)
    if k > 1 and bool(fast_mask_2d.any()):
        sel_rows, sel_cols = fast_mask_2d.nonzero(as_tuple=True)
        h = hidden[sel_rows, prev[sel_rows, sel_cols]]  # [M, D]
        c = packed.codes[sel_rows, :, pos[sel_rows, sel_cols]]  # [M, K]
        f_logits = model.fast_forward(h, c).float() / temperature  # [M, K, C]
        if eos_id is not None:
            f_logits = _constrain_fast(f_logits, model.config)
        f_lp = torch.gather(F.log_softmax(f_logits, dim=-1), -1, c.unsqueeze(-1)).squeeze(-1)  # [M, K]
        # Codebook 0 is the slow AR's sample; the fast AR's actions are codebooks 1..K-1.
        fast = fast.index_put((sel_rows, sel_cols), f_lp[:, 1:])
    fast_mask = fast_mask_2d.unsqueeze(-1).expand(n, s, max(k - 1, 0))
    return PolicyLogProbs(slow=slow, slow_mask=slow_mask, fast=fast, fast_mask=fast_mask)


__all__ = ["PackedCompletions", "completion_logprobs", "pack_completions"]
