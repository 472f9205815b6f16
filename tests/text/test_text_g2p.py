"""The espeak-ng G2P front-end: markers, tags and punctuation survive; the tokenizer saves and applies it."""

import pytest
import torch

from s2train.text import Reference, S2Tokenizer, build_prompt
from s2train.text.g2p import EspeakG2P, build_g2p

from .conftest import CORPUS


@pytest.fixture(scope="module")
def g2p():
    return EspeakG2P("en-us")


def test_words_become_ipa_and_control_pieces_stay(g2p):
    out = g2p("<|speaker:0|>Hello [laugh] there, my friend! <|speaker:1|>Yes.")
    assert out.startswith("<|speaker:0|>") and "[laugh]" in out and "<|speaker:1|>" in out
    assert "," in out and "!" in out and out.endswith(".")
    assert "Hello" not in out and "friend" not in out  # words were converted
    assert "ð" in out  # "there"
    assert g2p("") == ""
    assert g2p("there") == g2p("there")  # cached, deterministic


def test_prefetch_fills_the_cache(g2p):
    g2p.prefetch(["one two.", "three [sigh] four"])
    assert {"one two", "three", "four"} <= set(g2p._cache)


def test_build_g2p_specs():
    assert build_g2p(None) is None and build_g2p("none") is None
    assert build_g2p("espeak:en-gb").voice == "en-gb"
    with pytest.raises(ValueError, match="unknown g2p"):
        build_g2p("festival")


def test_missing_binary_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="apt-get install espeak-ng"):
        EspeakG2P(binary="no-such-espeak-binary")


def test_tokenizer_saves_g2p_and_prompts_use_phonemes(tmp_path, g2p):
    tok = S2Tokenizer.train(CORPUS, vocab_size=300, num_semantic=16, g2p="espeak")
    assert tok.g2p == "espeak" and tok.transcript("Hello there.") == g2p("Hello there.")
    tok.save(tmp_path / "tok")
    back = S2Tokenizer.load(tmp_path / "tok")
    assert back.g2p == "espeak" and "g2p='espeak'" in repr(back)
    codes = torch.zeros(2, 3, dtype=torch.long)
    p = build_prompt(back, "Hello there.", references=[Reference("Good day.", codes)], target_codes=codes)
    assert back.decode(p.tokens[p.text_mask].tolist()) == g2p("Hello there.")
    assert g2p("Good day.") in back.decode(p.tokens.tolist())
    plain = S2Tokenizer.train(CORPUS, vocab_size=300, num_semantic=16)
    assert plain.g2p is None and plain.transcript("Hello there.") == "Hello there."


def test_data_module_refuses_a_tokenizer_with_another_g2p(tmp_path):
    from s2train.data.codes import ensure_tokenizer

    ensure_tokenizer(tmp_path / "tok", CORPUS, 300, 16, g2p="espeak")
    assert ensure_tokenizer(tmp_path / "tok", CORPUS, 300, 16, g2p="espeak").g2p == "espeak"
    with pytest.raises(ValueError, match="g2p"):
        ensure_tokenizer(tmp_path / "tok", CORPUS, 300, 16, g2p=None)


def test_cli_converts_a_code_dataset_and_marks_a_tokenizer(tmp_path, g2p, capsys):
    from datasets import Dataset

    from s2train.text.g2p import main

    rows = [
        {"id": "a", "text": "Hello there.", "codes": [[1, 2]]},
        {"id": "b", "text": "[sigh] Good day!", "codes": [[3]]},
    ]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "codes"))
    main(["codes", str(tmp_path / "codes"), str(tmp_path / "phon")])
    from datasets import load_from_disk

    out = load_from_disk(str(tmp_path / "phon"))
    texts = list(out["text"])
    assert texts == [g2p("Hello there."), g2p("[sigh] Good day!")] and list(out["codes"]) == [[[1, 2]], [[3]]]
    S2Tokenizer.train(texts * 4, vocab_size=260, num_semantic=8).save(tmp_path / "tok")
    main(["mark", str(tmp_path / "tok")])
    assert S2Tokenizer.load(tmp_path / "tok").g2p == "espeak"
    with pytest.raises(SystemExit):
        main(["oops"])


def test_bundle_round_trip_keeps_the_g2p(tmp_path, one_thread):
    from s2train.ar import DualAR, preset
    from s2train.bundle import export_bundle, load_pretrained

    tok = S2Tokenizer.train(CORPUS, vocab_size=300, num_semantic=16, g2p="espeak")
    cfg = preset("tiny", vocab_size=tok.vocab_size, semantic_start=tok.semantic_start, num_semantic=16,
                 num_codebooks=2, codebook_size=16)  # fmt: skip
    export_bundle(DualAR(cfg), None, tok, None, tmp_path / "bundle")
    _, back, _ = load_pretrained(tmp_path / "bundle")
    assert back.g2p == "espeak" and back.transcript("Good day.") == tok.transcript("Good day.")
