"""Normalization and WER/CER aggregation on hand-checked examples."""

from __future__ import annotations

import pytest

from s2train.eval.metrics.wer import utterance_errors, wer_report
from s2train.eval.normalize import normalize_numbers, normalize_text, number_to_words, strip_markup


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Don't STOP, believin'!", "don't stop believin'"),
        ("It\u2019s  a\ttest...  right?", "it's a test right"),
        ("[whisper] We go [speak quickly] now.", "we go now"),
        ("<|speaker:0|>Hello there. <|speaker:1|> Hi!", "hello there hi"),
        ('well-known "quotes" (and) semi;colons', "well known quotes and semi colons"),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_strip_markup_keeps_words():
    assert strip_markup("I think [whisper] we should") == "I think we should"


def test_chinese_is_character_level():
    assert normalize_text("你好，世界！", language="zh") == "你好世界"
    row = utterance_errors("你好世界", "你好世", language="zh")
    assert row["wer"] == pytest.approx(0.25) and row["deletions"] == 1


def test_number_normalizer():
    assert number_to_words(0) == "zero"
    assert number_to_words(1984) == "one thousand nine hundred eighty-four"
    assert number_to_words(21, ordinal=True) == "twenty-first"
    assert number_to_words(12, ordinal=True) == "twelfth"
    assert normalize_numbers("I have 3 cats and 2.5 dogs on the 3rd floor") == (
        "I have three cats and two point five dogs on the third floor"
    )
    assert normalize_text("Room 101", numbers=True) == "room one hundred one"
    assert normalize_text("Room 101") == "room 101"
    with pytest.raises(ValueError):
        number_to_words(-1)


def test_per_utterance_vs_corpus_wer():
    refs = ["the cat sat", "a b c d e f g h i j"]
    hyps = ["the dog sat", "a b c d e f g h i j"]
    rep = wer_report(refs, hyps)
    # per utterance: 1/3 and 0 -> mean 1/6; corpus: 1 error / 13 words.
    assert rep["wer"] == pytest.approx(1 / 6)
    assert rep["wer_corpus"] == pytest.approx(1 / 13)
    assert (rep["substitutions"], rep["deletions"], rep["insertions"]) == (1, 0, 0)


def test_insertions_and_deletions_counted():
    rep = wer_report(["a b c d"], ["a c d e"])
    assert (rep["substitutions"], rep["deletions"], rep["insertions"]) == (0, 1, 1)
    assert rep["wer"] == pytest.approx(2 / 4)


def test_empty_hypothesis_is_one():
    rep = wer_report(["hello world", "fine"], ["", "fine"])
    assert rep["per_utterance"][0]["wer"] == 1.0
    assert rep["wer"] == pytest.approx(0.5)
    assert rep["deletions"] == 2


def test_empty_reference_skipped_and_mismatch_raises():
    rep = wer_report(["[pause]", "ok"], ["anything", "ok"])
    assert rep["n_skipped"] == 1 and rep["wer"] == 0.0
    with pytest.raises(ValueError, match="2 references but 1"):
        wer_report(["a", "b"], ["a"])


def test_punctuation_and_case_do_not_count():
    assert wer_report(["Hello, World!"], ["hello world"])["wer"] == 0.0
