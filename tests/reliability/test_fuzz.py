"""Property-based fuzzing (hypothesis) of the text front-end, the prompt builder, manifests and code ids.

Example counts are set so each test takes a few seconds on the shared CPU box (see docs/reliability.md).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2train.data.manifest import ManifestItem, read_manifest, write_manifest
from s2train.text import IM_END, IM_START, PAD, VOICE, Reference, S2Tokenizer, build_prompt
from s2train.text.special import parse_semantic_token, semantic_token

NUM_SEMANTIC = 64
K = 4


def fuzz(max_examples: int) -> settings:
    """No deadline (shared CPU), fixture health checks off, no example database written into the repo."""
    return settings(
        max_examples=max_examples, deadline=None, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )  # fmt: skip


TAGS = [
    "[laugh]",
    "[whisper]",
    "[sarcastic robot]",
    "[",
    "]",
    "[]",
    "<|speaker:0|>",
    "<|speaker:12|>",
    "<|spe",
]
# chat/semantic token strings a user could type (they are special tokens for the tokenizer)
SPECIALS = [IM_START, IM_END, VOICE, PAD, "<|semantic:0|>", f"<|semantic:{NUM_SEMANTIC - 1}|>"]


@pytest.fixture(scope="module")
def tok() -> S2Tokenizer:
    texts = ["hello there, general speech model.", "[laugh] ha ha", "<|speaker:0|>hi <|speaker:1|>yo"] * 20
    return S2Tokenizer.train(texts, vocab_size=300, num_semantic=NUM_SEMANTIC)


def tagged_text(alphabet: list[str]):
    """Any Unicode text with tags (and optionally other markers) inserted anywhere."""
    piece = st.one_of(st.text(max_size=12), st.sampled_from(alphabet))
    return st.lists(piece, max_size=8).map("".join)


def codes_strategy(min_t: int = 1, max_t: int = 6):
    return st.integers(min_t, max_t).flatmap(
        lambda t: st.lists(
            st.lists(st.integers(0, NUM_SEMANTIC - 1), min_size=t, max_size=t), min_size=K, max_size=K
        ).map(lambda rows: torch.tensor(rows, dtype=torch.long))
    )


@fuzz(2000)
@given(text=tagged_text(TAGS + SPECIALS))
def test_tokenizer_round_trips_any_text(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


@fuzz(400)
@given(
    text=tagged_text(TAGS),
    target=st.one_of(st.none(), codes_strategy()),
    refs=st.lists(st.tuples(tagged_text(TAGS), codes_strategy(), st.integers(0, 3)), max_size=2),
    context=st.lists(st.tuples(tagged_text(TAGS).filter(str.strip), codes_strategy()), max_size=2),
)
def test_build_prompt_never_crashes_and_masks_agree(tok, text, target, refs, context):
    if not text.strip():
        with pytest.raises(ValueError, match="empty"):
            build_prompt(tok, text, target_codes=target)
        return
    references = [Reference(t, c, s) for t, c, s in refs]
    p = build_prompt(tok, text, references=references, target_codes=target, context=context, num_codebooks=K)
    n = p.tokens.shape[0]
    assert p.codes.shape == (K, n) and p.audio_mask.shape == p.loss_mask.shape == (n,)
    frames = sum(c.shape[1] for _, c, _ in refs) + sum(c.shape[1] for _, c in context)
    frames += 0 if target is None else target.shape[1]
    assert int(p.audio_mask.sum()) == frames
    # audio positions carry semantic_start + codebook 0; elsewhere codes are zero
    a = p.audio_mask
    assert torch.equal(p.tokens[a], p.codes[0, a] + tok.semantic_start)
    assert not p.codes[:, ~a].any()
    # the text itself holds no chat/semantic markers, so no non-audio position may be a semantic id
    assert not any(tok.is_semantic(int(t)) for t in p.tokens[~a])
    if target is None:
        assert not p.loss_mask.any()
        assert p.tokens[-1].item() == tok.voice_id
    else:
        t = target.shape[1]
        # loss on the target frames and the closing <|im_end|>, nowhere else
        assert int(p.loss_mask.sum()) == t + 1
        assert p.loss_mask[-(t + 1) :].all() and p.audio_mask[-(t + 1) : -1].all()
        assert p.tokens[-1].item() == tok.im_end_id
        assert torch.equal(p.codes[:, -(t + 1) : -1], target)


def test_build_prompt_keeps_typed_special_tokens_as_text(tok):
    text = "please say <|semantic:3|> and <|im_end|> literally"
    try:
        p = build_prompt(tok, text, target_codes=torch.zeros(K, 2, dtype=torch.long))
    except ValueError as err:  # rejecting the text with a clear error is an acceptable fix too
        assert "<|semantic:3|>" in str(err) or "<|im_end|>" in str(err)
        return
    a = p.audio_mask
    assert not any(tok.is_semantic(int(t)) for t in p.tokens[~a])
    assert int((p.tokens == tok.im_end_id).sum()) == 2  # user turn end + final


@fuzz(300)
@given(index=st.integers(0, NUM_SEMANTIC - 1))
def test_semantic_ids_round_trip(tok, index):
    tid = tok.semantic_id(index)
    assert tok.is_semantic(tid) and tid - tok.semantic_start == index
    assert tok.decode([tid]) == semantic_token(index)
    assert tok.encode(semantic_token(index)) == [tid]
    assert parse_semantic_token(tok.decode([tid])) == index
    assert tok.token_to_id(semantic_token(index)) == tid


@fuzz(300)
@given(bad=st.one_of(st.integers(-(2**63), -1), st.integers(NUM_SEMANTIC, 2**63 - 1)))
def test_semantic_ids_out_of_range_are_rejected(tok, bad):
    with pytest.raises(ValueError, match="outside"):
        tok.semantic_id(bad)
    codes = torch.zeros(K, 3, dtype=torch.long)
    codes[0, 1] = bad
    with pytest.raises(ValueError, match="out of range"):
        build_prompt(tok, "hi", target_codes=codes)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
RESERVED = {"id", "path", "text", "speaker", "language", "duration", "split"}
names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: s.strip() == s and "/" not in s and "\\" not in s and s not in (".", "..")
)
# (id, file name, text, speaker, language, duration, split, extra): the audio path goes under the test root
item_strategy = st.tuples(
    st.text(max_size=20),
    names,
    st.text(max_size=60),
    st.text(max_size=20),
    st.text(max_size=8),
    st.floats(0, 1e5, allow_nan=False),
    st.sampled_from(["train", "val", "test", "heldout"]),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k not in RESERVED), json_values, max_size=3),
)


@fuzz(400)
@given(items=st.lists(item_strategy, max_size=5))
def test_manifest_round_trips_random_fields(tmp_path_factory, items):
    root = tmp_path_factory.mktemp("fuzz_manifest").resolve()
    items = [
        ManifestItem(i, str(root / "wavs" / f"{n}.wav"), t, s, lang, d, sp, x)
        for i, n, t, s, lang, d, sp, x in items
    ]
    path = write_manifest(items, root / "m.jsonl")
    back = read_manifest(path)
    assert len(back) == len(items)
    for a, b in zip(items, back):
        assert (b.id, b.text, b.speaker, b.language, b.split) == (
            a.id,
            a.text,
            a.speaker,
            a.language,
            a.split,
        )
        assert b.path == a.path
        assert math.isclose(b.duration, round(a.duration, 4), rel_tol=0, abs_tol=1e-9)
        assert json.dumps(b.extra, sort_keys=True) == json.dumps(a.extra, sort_keys=True)
    # writing what was read gives the same bytes (stable, relative paths)
    assert write_manifest(back, root / "again.jsonl").read_bytes() == path.read_bytes()
