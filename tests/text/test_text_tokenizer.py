"""S2Tokenizer: byte round-trip, special ids, semantic range, persistence."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from s2train.text import IM_END, IM_START, PAD, VOICE, S2Tokenizer, semantic_token


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_roundtrip_any_unicode(tok, s):
    assert tok.decode(tok.encode(s)) == s


@pytest.mark.parametrize(
    "s", ["", " ", "héllo 世界 🎉", "\x00\x01\n\t", "<|speaker:3|>[pitch up] hi", "a" * 500, "👩‍👩‍👧‍👦 ñ ß"]
)
def test_roundtrip_examples(tok, s):
    ids = tok.encode(s)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == s


def test_special_tokens_are_atomic_and_after_text(tok):
    text_vocab = tok.semantic_start - 4
    for name, attr in [
        (IM_START, "im_start_id"),
        (IM_END, "im_end_id"),
        (VOICE, "voice_id"),
        (PAD, "pad_id"),
    ]:
        ids = tok.encode(name)
        assert ids == [getattr(tok, attr)]
        assert text_vocab <= ids[0] < tok.semantic_start


def test_speaker_and_tags_are_plain_text(tok):
    for s in ["<|speaker:0|>", "[laugh]"]:
        ids = tok.encode(s)
        assert len(ids) > 1
        assert not any(tok.is_semantic(i) for i in ids)
        assert all(i < tok.semantic_start - 4 for i in ids)


def test_semantic_range_contiguous(tok):
    assert tok.num_semantic == 32
    assert tok.vocab_size == tok.semantic_start + 32
    for i in range(32):
        assert tok.token_to_id(semantic_token(i)) == tok.semantic_start + i == tok.semantic_id(i)
        assert tok.encode(semantic_token(i)) == [tok.semantic_start + i]
    with pytest.raises(ValueError, match="outside"):
        tok.semantic_id(32)


def test_save_load_and_from_file(tok, tmp_path):
    tok.save(tmp_path / "t")
    assert S2Tokenizer.exists(tmp_path / "t")
    again = S2Tokenizer.load(tmp_path / "t")
    assert again.vocab_size == tok.vocab_size
    assert again.semantic_start == tok.semantic_start
    s = "<|im_start|>user\nsome text ✓<|im_end|>"
    assert again.encode(s) == tok.encode(s)
    # A plain tokenizer.json without our tokens gets them appended.
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        ["abc abc"], trainers.BpeTrainer(initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    raw.save(str(tmp_path / "plain.json"))
    with pytest.raises(ValueError, match="num_semantic"):
        S2Tokenizer.from_file(tmp_path / "plain.json")
    plain = S2Tokenizer.from_file(tmp_path / "plain.json", num_semantic=4)
    assert plain.semantic_start == plain.pad_id + 1
    plain.save(tmp_path / "p")
    loaded = S2Tokenizer.from_file(tmp_path / "p" / "tokenizer.json")
    assert loaded.num_semantic == 4
    with pytest.raises(ValueError, match="semantic"):
        S2Tokenizer.from_file(tmp_path / "p" / "tokenizer.json", num_semantic=8)
    with pytest.raises(FileNotFoundError):
        S2Tokenizer.load(tmp_path / "missing")
