"""build_prompt: exact template layout, masks, audio positions, bad input."""

import pytest
import torch

from s2train.text import Prompt, Reference, build_prompt, render_prompt, unconditional_prompt

K = 3


def _codes(t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 32, (K, t), generator=g)


def _frames(codes: torch.Tensor) -> str:
    return "".join(f"<|semantic:{int(c)}|>" for c in codes[0])


def test_layout_with_reference_and_target(tok):
    ref, tgt = _codes(4, 0), _codes(5, 1)
    text = "<|speaker:0|>Hello [laugh] there <|speaker:1|>[whisper] see you"
    p = build_prompt(tok, text, references=[Reference("ref words", ref)], target_codes=tgt)
    expected = (
        "<|im_start|>system\nconvert the provided text to speech reference to the following:\n"
        f"Text:\n<|speaker:0|>ref words\nSpeech:\n{_frames(ref)}<|im_end|>\n"
        f"<|im_start|>user\n{text}<|im_end|>\n"
        f"<|im_start|>assistant\n<|voice|>{_frames(tgt)}<|im_end|>"
    )
    assert render_prompt(tok, p) == expected
    L = len(p)
    assert p.codes.shape == (K, L) and p.audio_mask.shape == p.loss_mask.shape == (L,)
    # Audio positions: reference then target frames, tokens are semantic ids of codebook 0.
    assert int(p.audio_mask.sum()) == 9
    assert torch.equal(p.codes[:, p.audio_mask], torch.cat([ref, tgt], dim=1))
    assert torch.equal(p.tokens[p.audio_mask], torch.cat([ref[0], tgt[0]]) + tok.semantic_start)
    assert (p.codes[:, ~p.audio_mask] == 0).all()
    # Loss mask: exactly the 5 target frames and the closing <|im_end|>, at the end of the prompt.
    assert p.loss_mask.sum() == 6
    assert p.loss_mask[-6:].all() and not p.loss_mask[:-6].any()
    assert int(p.tokens[-1]) == tok.im_end_id
    assert int(p.tokens[-7]) == tok.voice_id


def test_inference_prompt_ends_with_voice_and_prefix_matches_training(tok):
    ref, tgt = _codes(4, 0), _codes(5, 1)
    refs = [Reference("a", ref, speaker=0), Reference("<|speaker:1|>b", _codes(2, 3), speaker=1)]
    infer = build_prompt(tok, "say this", references=refs)
    train = build_prompt(tok, "say this", references=refs, target_codes=tgt)
    s = render_prompt(tok, infer)
    assert s.endswith("<|im_start|>assistant\n<|voice|>")
    assert "Text:\n<|speaker:0|>a\nSpeech:\n" in s and "Text:\n<|speaker:1|>b\nSpeech:\n" in s
    assert not infer.loss_mask.any()
    n = len(infer)
    assert torch.equal(train.tokens[:n], infer.tokens) and torch.equal(train.codes[:, :n], infer.codes)


def test_no_reference_omits_system_and_context_turns(tok):
    ctx = [("first part.", _codes(3, 4))]
    tgt = _codes(2, 5)
    p = build_prompt(tok, "second part.", target_codes=tgt, context=ctx)
    assert render_prompt(tok, p) == (
        f"<|im_start|>user\nfirst part.<|im_end|>\n<|im_start|>assistant\n<|voice|>{_frames(ctx[0][1])}<|im_end|>\n"
        f"<|im_start|>user\nsecond part.<|im_end|>\n<|im_start|>assistant\n<|voice|>{_frames(tgt)}<|im_end|>"
    )
    # Context frames are input only: no loss on them.
    assert p.loss_mask.sum() == 3 and p.audio_mask.sum() == 5


def test_bad_input(tok):
    with pytest.raises(ValueError, match="empty"):
        build_prompt(tok, "  ")
    with pytest.raises(ValueError, match="K=2"):
        build_prompt(
            tok,
            "hi",
            references=[Reference("r", _codes(3, 0))],
            target_codes=torch.zeros(2, 4, dtype=torch.long),
        )
    with pytest.raises(ValueError, match="K=3"):
        build_prompt(tok, "hi", target_codes=_codes(3, 0), num_codebooks=4)
    with pytest.raises(ValueError, match="out of range"):
        build_prompt(tok, "hi", target_codes=torch.full((K, 2), 99))
    with pytest.raises(ValueError, match="reference 0"):
        build_prompt(tok, "hi", references=[Reference(None, _codes(2, 0))])


def test_reference_without_transcript(tok):
    ref = _codes(2, 0)
    p = build_prompt(tok, "hi", references=[Reference(" ", ref, speaker=1)])
    assert "Text:\n<|speaker:1|>\nSpeech:\n" + _frames(ref) in render_prompt(tok, p)


@pytest.mark.parametrize(
    "text", ["plain words here.", "<|speaker:0|>Hi [laugh] there <|speaker:1|>yes", " x"]
)
def test_text_mask_marks_exactly_the_final_transcript(tok, text):
    ctx = [("earlier turn", _codes(3, 2))]
    p = build_prompt(tok, text, references=[Reference("ref words", _codes(4, 0))], context=ctx,
                     target_codes=_codes(5, 1))  # fmt: skip
    assert p.text_mask.shape == p.tokens.shape
    assert tok.decode(p.tokens[p.text_mask].tolist()) == text
    marked = p.text_mask.nonzero().flatten()
    assert int(marked[-1] - marked[0]) + 1 == len(marked)  # one contiguous span
    assert int(p.tokens[marked[-1] + 1]) == tok.im_end_id
    assert not (p.text_mask & p.audio_mask).any()


@pytest.mark.parametrize("target", [False, True])
def test_unconditional_prompt_drops_exactly_the_final_transcript(tok, target):
    ref, ctx_codes, tgt = _codes(4, 0), _codes(3, 2), _codes(5, 1)
    text = "<|speaker:0|>Hello [laugh] there"
    p = build_prompt(tok, text, references=[Reference("ref words", ref)], context=[("earlier turn", ctx_codes)],
                     target_codes=tgt if target else None)  # fmt: skip
    u = unconditional_prompt(p)
    rendered = render_prompt(tok, p)
    # The final user turn loses its text, nothing else changes (reference, context turn, target frames).
    final = f"<|im_start|>user\n{text}<|im_end|>"
    assert rendered.count(final) == 1
    assert render_prompt(tok, u) == rendered.replace(final, "<|im_start|>user\n<|im_end|>")
    assert len(u) == len(p) - int(p.text_mask.sum()) and not u.text_mask.any()
    assert torch.equal(u.codes[:, u.audio_mask], p.codes[:, p.audio_mask])
    assert int(u.loss_mask.sum()) == int(p.loss_mask.sum()) == (6 if target else 0)
    # Token-exact with encoding the turn with an empty text (no BPE merge across the removed span).
    turn = tok.encode("<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<|voice|>")
    start = int(p.text_mask.nonzero()[0]) - len(tok.encode("<|im_start|>user\n"))
    assert u.tokens[start : start + len(turn)].tolist() == turn
    # Idempotent, and prompts built by hand (no text_mask) are refused.
    assert torch.equal(unconditional_prompt(u).tokens, u.tokens)
    with pytest.raises(ValueError, match="text_mask"):
        unconditional_prompt(Prompt(p.tokens, p.codes, p.audio_mask, p.loss_mask))
