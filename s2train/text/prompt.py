"""The one prompt template, shared by the training collator and inference.

Layout (S2-SYSTEM.md section 3), with `{frames}` one position per codec frame::

    <|im_start|>system
    {system_text}
    Text:
    <|speaker:0|>{reference transcript}
    Speech:
    {reference frames}<|im_end|>
    <|im_start|>user
    {context text 0}<|im_end|>
    <|im_start|>assistant
    <|voice|>{context frames 0}<|im_end|>
    ...
    <|im_start|>user
    {text}<|im_end|>
    <|im_start|>assistant
    <|voice|>{target frames}<|im_end|>

Several references repeat the `\\nText:\\n<|speaker:i|>...\\nSpeech:\\n{frames}` block inside the system turn.
Without references the system turn is omitted. Without `target_codes` the prompt ends right after
`<|im_start|>assistant\\n<|voice|>`, which is where generation starts.

The *unconditional* prompt (`unconditional_prompt`) is the same prompt with the final user turn's transcript
removed, so that turn reads `<|im_start|>user\\n<|im_end|>`; training's text dropout and inference's
classifier-free guidance both build it with that one function.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from s2train.text.special import IM_END, IM_START, VOICE, speaker_tag
from s2train.text.tokenizer import S2Tokenizer

DEFAULT_SYSTEM_TEXT = "convert the provided text to speech reference to the following:"


@dataclass
class Reference:
    """A reference voice: its transcript and codes `[K, T]`; `speaker` is the `<|speaker:i|>` index."""

    text: str
    codes: torch.Tensor
    speaker: int = 0


@dataclass
class Prompt:
    """A built prompt.

    Attributes:
        tokens: `[L]` long; at audio positions `semantic_start + codes[0]`.
        codes: `[K, L]` long; the frame at audio positions, 0 elsewhere.
        audio_mask: `[L]` bool, True at codec-frame positions.
        loss_mask: `[L]` bool, True where the token is a slow-loss *target* (assistant frames + closing
            `<|im_end|>` of the final turn).
        text_mask: `[L]` bool, True at the tokens of the final user turn's text (the transcript the target
            frames speak); used by the alignment-prior loss. None when built by hand.
    """

    tokens: torch.Tensor
    codes: torch.Tensor
    audio_mask: torch.Tensor
    loss_mask: torch.Tensor
    text_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


class _Builder:
    """Accumulates text and audio segments into the four aligned arrays."""

    def __init__(self, tokenizer: S2Tokenizer, num_codebooks: int):
        self.tok = tokenizer
        self.k = num_codebooks
        self.tokens: list[torch.Tensor] = []
        self.codes: list[torch.Tensor] = []
        self.audio: list[torch.Tensor] = []
        self.loss: list[torch.Tensor] = []
        self.text_marks: list[torch.Tensor] = []

    def text(self, s: str, loss: bool = False, mark_after: str | None = None) -> None:
        """Append text tokens. `mark_after`: a prefix of `s`; the tokens after it up to the next `<|im_end|>`
        are marked in `text_mask`. The segment is encoded whole, so marking never changes the tokens."""
        ids = torch.tensor(self.tok.encode(s), dtype=torch.long)
        n = ids.numel()
        mark = torch.zeros(n, dtype=torch.bool)
        if mark_after is not None:
            pre = self.tok.encode(mark_after)
            # A BPE merge across the boundary shortens the prefix by one token at most.
            start = len(pre) if ids[: len(pre)].tolist() == pre else max(len(pre) - 1, 0)
            ends = (ids[start:] == self.tok.im_end_id).nonzero()
            end = start + int(ends[0]) if len(ends) else n
            mark[start:end] = True
        self.text_marks.append(mark)
        self.tokens.append(ids)
        self.codes.append(torch.zeros(self.k, n, dtype=torch.long))
        self.audio.append(torch.zeros(n, dtype=torch.bool))
        self.loss.append(torch.full((n,), loss, dtype=torch.bool))

    def frames(self, codes: torch.Tensor, loss: bool = False) -> None:
        n = codes.shape[1]
        self.text_marks.append(torch.zeros(n, dtype=torch.bool))
        self.tokens.append(codes[0] + self.tok.semantic_start)
        self.codes.append(codes)
        self.audio.append(torch.ones(n, dtype=torch.bool))
        self.loss.append(torch.full((n,), loss, dtype=torch.bool))

    def build(self) -> Prompt:
        return Prompt(
            tokens=torch.cat(self.tokens),
            codes=torch.cat(self.codes, dim=1),
            audio_mask=torch.cat(self.audio),
            loss_mask=torch.cat(self.loss),
            text_mask=torch.cat(self.text_marks),
        )


def _check_codes(codes, num_codebooks: int | None, tokenizer: S2Tokenizer, what: str) -> torch.Tensor:
    codes = torch.as_tensor(codes, dtype=torch.long)
    if codes.dim() != 2:
        raise ValueError(f"{what}: codes must be [K, T], got shape {tuple(codes.shape)}")
    if num_codebooks is not None and codes.shape[0] != num_codebooks:
        raise ValueError(f"{what}: codes have K={codes.shape[0]} codebooks, expected K={num_codebooks}")
    if codes.shape[1] == 0:
        raise ValueError(f"{what}: codes have no frames (T=0)")
    if codes.numel() and (codes.min() < 0 or codes[0].max() >= tokenizer.num_semantic):
        raise ValueError(
            f"{what}: codes out of range (codebook 0 must be in [0, {tokenizer.num_semantic}), "
            f"got min {int(codes.min())}, max {int(codes[0].max())})"
        )
    return codes


# Control tokens a user might paste into text; they would be encoded as the real control tokens.
_CONTROL_TOKEN = re.compile(r"<\|(?:im_start|im_end|voice|pad|semantic:\d+)\|>")


def _check_text(text: str, what: str, allow_empty: bool = False) -> str:
    if not isinstance(text, str) or (not allow_empty and not text.strip()):
        raise ValueError(f"{what}: text is empty")
    found = _CONTROL_TOKEN.search(text)
    if found:
        raise ValueError(
            f"{what}: text contains the control token {found.group(0)!r}; remove it (only <|speaker:i|> "
            "markers and [tags] are allowed inline)"
        )
    return text


def build_prompt(
    tokenizer: S2Tokenizer,
    text: str,
    references: Sequence[Reference] = (),
    target_codes: torch.Tensor | None = None,
    context: Sequence[tuple[str, torch.Tensor]] = (),
    system_text: str = DEFAULT_SYSTEM_TEXT,
    num_codebooks: int | None = None,
) -> Prompt:
    """Build the chat prompt for one utterance.

    Args:
        tokenizer: the S2 tokenizer.
        text: text to speak (tags and `<|speaker:i|>` markers are kept as-is).
        references: reference voices placed in the system turn.
        target_codes: `[K, T]` frames to train on; None builds an inference prompt ending with `<|voice|>`.
        context: earlier `(text, codes[K, T])` turns, rendered as prior user/assistant turns (no loss).
        system_text: the system instruction line.
        num_codebooks: expected K; None takes it from the first codes given (or 1 when there are none).

    Returns:
        A `Prompt`.

    Raises:
        ValueError: empty text, or codes with the wrong K / shape / range (the message names K).
    """
    text = _check_text(text, "build_prompt")
    all_codes = [r.codes for r in references] + [c for _, c in context]
    if target_codes is not None:
        all_codes.append(target_codes)
    if num_codebooks is None:
        num_codebooks = int(torch.as_tensor(all_codes[0]).shape[0]) if all_codes else 1
    b = _Builder(tokenizer, num_codebooks)

    if references:
        b.text(f"{IM_START}system\n{system_text}")
        for i, ref in enumerate(references):
            ref_codes = _check_codes(ref.codes, num_codebooks, tokenizer, f"reference {i}")
            if not isinstance(ref.text, str):
                raise ValueError(f"reference {i}: text must be a str, got {type(ref.text).__name__}")
            _check_text(ref.text, f"reference {i}", allow_empty=True)
            # A reference without transcript is allowed (voice only): the marker stands alone.
            ref_text = tokenizer.transcript(ref.text) if ref.text.strip() else ""
            if not ref_text.startswith("<|speaker:"):
                ref_text = speaker_tag(ref.speaker) + ref_text
            b.text(f"\nText:\n{ref_text}\nSpeech:\n")
            b.frames(ref_codes)
        b.text(f"{IM_END}\n")

    for i, (ctx_text, ctx_codes) in enumerate(context):
        ctx_text = tokenizer.transcript(_check_text(ctx_text, f"context turn {i}"))
        ctx_codes = _check_codes(ctx_codes, num_codebooks, tokenizer, f"context turn {i}")
        b.text(f"{IM_START}user\n{ctx_text}{IM_END}\n{IM_START}assistant\n{VOICE}")
        b.frames(ctx_codes)
        b.text(f"{IM_END}\n")

    text = tokenizer.transcript(text)
    b.text(f"{IM_START}user\n{text}{IM_END}\n{IM_START}assistant\n{VOICE}", mark_after=f"{IM_START}user\n")
    if target_codes is not None:
        target_codes = _check_codes(target_codes, num_codebooks, tokenizer, "target")
        b.frames(target_codes, loss=True)
        b.text(IM_END, loss=True)
    return b.build()


def unconditional_prompt(prompt: Prompt) -> Prompt:
    """The unconditional counterpart of `prompt`: the one definition for text dropout and CFG.

    Removes the final transcript's tokens (`prompt.text_mask`, which also covers its `<|speaker:i|>` marker
    and `[tags]`), so the final user turn becomes `<|im_start|>user\\n<|im_end|>`. The system turn with its
    reference voices, earlier context turns, `<|voice|>` and any target frames are kept unchanged, so the
    model learns (and guidance contrasts) "this voice, no text". Removing tokens rather than re-encoding an
    empty text needs no tokenizer, which lets the inference engine derive the prompt itself (with the byte-level
    BPE of `S2Tokenizer`, whose pre-tokenizer splits at the newline, the tokens equal those of that turn built
    with an empty text; tests/text/test_text_prompt.py checks it). Training
    (`s2train.data.codes`, `data.text_dropout`) and inference (`SamplingParams.cfg_scale`) both call this.

    Args:
        prompt: a `Prompt` from `build_prompt` (with or without target frames).
    Returns:
        A new `Prompt` of length `len(prompt) - prompt.text_mask.sum()` whose `text_mask` is all False.
    Raises:
        ValueError: the prompt has no `text_mask` (built by hand).
    """
    if prompt.text_mask is None:
        raise ValueError(
            "unconditional_prompt: the prompt has no text_mask (build it with s2train.text.build_prompt)"
        )
    keep = ~prompt.text_mask.bool()
    return Prompt(
        tokens=prompt.tokens[keep],
        codes=prompt.codes[:, keep],
        audio_mask=prompt.audio_mask[keep],
        loss_mask=prompt.loss_mask[keep],
        text_mask=torch.zeros(int(keep.sum()), dtype=torch.bool, device=prompt.tokens.device),
    )


def render_prompt(tokenizer: S2Tokenizer, prompt: Prompt) -> str:
    """Decode a prompt to its string form (semantic tokens appear as `<|semantic:i|>`); for debugging/tests."""
    return tokenizer.decode(prompt.tokens.tolist())
