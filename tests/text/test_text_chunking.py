"""chunk_text: speaker turns first, then sentences, then words."""

import pytest

from s2train.text import chunk_text, split_speaker_turns


def test_split_speaker_turns():
    s = "intro <|speaker:0|>Hello [laugh] there <|speaker:1|>[whisper] see you"
    assert split_speaker_turns(s) == [
        "intro",
        "<|speaker:0|>Hello [laugh] there",
        "<|speaker:1|>[whisper] see you",
    ]


def test_chunk_short_turns_stay_whole():
    s = "<|speaker:0|>Hi. <|speaker:1|>Yo."
    assert chunk_text(s, max_chars=100) == ["<|speaker:0|>Hi.", "<|speaker:1|>Yo."]


def test_chunk_long_turn_at_sentences_keeps_marker():
    s = "<|speaker:2|>" + " ".join(f"Sentence number {i} is here." for i in range(10))
    chunks = chunk_text(s, max_chars=60)
    assert len(chunks) > 1
    assert all(c.startswith("<|speaker:2|>") for c in chunks)
    assert all(len(c) <= 60 for c in chunks)
    assert all(c.endswith(".") for c in chunks)  # cut at sentence ends, not mid-sentence
    body = " ".join(c[len("<|speaker:2|>") :] for c in chunks)
    assert body == s[len("<|speaker:2|>") :]


def test_chunk_falls_back_to_words_and_hard_cut():
    words = " ".join(["word"] * 50)
    chunks = chunk_text(words, max_chars=20)
    assert all(len(c) <= 20 for c in chunks) and " ".join(chunks) == words
    cjk = "这是一个没有标点的很长的句子" * 3
    assert "".join(chunk_text(cjk, max_chars=10)) == cjk
    assert chunk_text("第一句。第二句。", max_chars=4) == ["第一句。", "第二句。"]


def test_chunk_bad_input():
    with pytest.raises(ValueError, match="empty"):
        chunk_text("   ")
    with pytest.raises(ValueError, match="max_chars"):
        chunk_text("a", max_chars=0)
