"""TTS facade, streaming and the CLI with a real tiny tokenizer, a tiny random codec and a tiny model."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from s2train.ar import DualAR, preset
from s2train.infer import main as infer_main
from s2train.inference.tts import TTS

CORPUS = ["hello there, how are you today?", "the quick brown fox jumps over the lazy dog."] * 20


@pytest.fixture(scope="module")
def parts():
    from s2train.codec import build_codec
    from s2train.text import S2Tokenizer

    cfg = yaml.safe_load((Path(__file__).parents[2] / "configs" / "codec" / "tiny.yaml").read_text())
    torch.manual_seed(0)
    codec = build_codec(cfg).eval()
    tok = S2Tokenizer.train(CORPUS, vocab_size=300, num_semantic=codec.codebook_sizes[0])
    mcfg = preset("tiny", vocab_size=tok.vocab_size, semantic_start=tok.semantic_start,
                  num_semantic=codec.codebook_sizes[0], codebook_sizes=codec.codebook_sizes, max_seq_len=512)  # fmt: skip
    model = DualAR(mcfg).eval()
    return model, tok, codec


@pytest.fixture
def tts(parts):
    return TTS(*parts, max_seconds=0.03)


def _ref(codec, seconds=0.02, seed=0):
    g = np.random.default_rng(seed)
    return (0.1 * g.standard_normal(int(codec.sample_rate * seconds))).astype(np.float32)


def test_synthesize_shapes_and_voice_cache(tts, parts):
    _, _, codec = parts
    ref = (_ref(codec), codec.sample_rate)
    wav, sr = tts.synthesize("hello there", references=[(ref, "the quick fox")], seed=0, do_sample=False)
    assert sr == codec.sample_rate and wav.dtype == np.float32 and wav.ndim == 1
    assert wav.size == tts.last_stats["frames_out"] * codec.hop_length > 0
    again, _ = tts.synthesize("hello there", references=[(ref, "the quick fox")], seed=0, do_sample=False)
    assert tts.voice_cache.hits == 1
    np.testing.assert_array_equal(wav, again)


def test_reference_from_path(tts, parts, tmp_path):
    import soundfile as sf

    _, _, codec = parts
    path = tmp_path / "ref.wav"
    sf.write(path, _ref(codec, seconds=0.1, seed=1), codec.sample_rate)
    wav, _ = tts.synthesize("how are you", references=[(str(path), "hello")], seed=1)
    assert wav.size > 0


def test_stream_matches_synthesize_and_records_ttfa(tts, parts):
    _, _, codec = parts
    ref = [((_ref(codec, seed=2), codec.sample_rate), "hello")]
    full, _ = tts.synthesize("the lazy dog", references=ref, seed=3, do_sample=False)
    chunks = list(tts.stream("the lazy dog", references=ref, seed=3, chunk_frames=5, do_sample=False))
    assert len(chunks) > 1 and tts.last_stats["ttfa_s"] is not None
    np.testing.assert_allclose(np.concatenate(chunks), full, atol=1e-4)


def test_stream_ttfa_counts_prompt_and_reference_encoding(tts, parts, monkeypatch):
    """TTFA starts at the call: building the prompt (reference encoding) is part of the wait."""
    import time

    _, _, codec = parts
    build = tts.prompt

    def slow_prompt(*args, **kwargs):
        time.sleep(0.5)  # stands in for encoding a long reference
        return build(*args, **kwargs)

    monkeypatch.setattr(tts, "prompt", slow_prompt)
    chunks = tts.stream("the lazy dog", references=[((_ref(codec), codec.sample_rate), "hi")], chunk_frames=2)
    next(chunks)
    assert tts.last_stats["ttfa_s"] >= 0.5


@pytest.mark.parametrize(
    "text, refs, sampling, match",
    [
        ("   ", [], {}, "text is empty"),
        ("hello", [((np.zeros(100, np.float32), 8000), "x")], {}, "sample rate"),
        ("hello", [], {"temperature": 0.0}, "temperature"),
        ("hello", [], {"top_p": 1.5}, "top_p"),
        ("hello", [], {"topp": 0.5}, "unknown sampling option"),
        ("hello " * 600, [], {}, "too long"),
        ("hello", [("missing.wav",)], {}, "expected"),
    ],
)
def test_bad_input_fails_before_compute(tts, monkeypatch, text, refs, sampling, match):
    def boom(*a, **k):
        raise AssertionError("compute started")

    monkeypatch.setattr(tts.engine, "generate", boom)
    monkeypatch.setattr(tts.codec, "encode", boom)
    with pytest.raises(ValueError, match=match):
        tts.synthesize(text, references=refs, **sampling)
    with pytest.raises(ValueError, match=match):
        tts.stream(text, references=refs, **sampling)


def test_bundle_and_cli(parts, tmp_path):
    from s2train.bundle import export_bundle
    from s2train.codec import save_codec

    model, tok, codec = parts
    save_codec(codec, tmp_path / "codec")
    export_bundle(model, None, tok, tmp_path / "codec", tmp_path / "bundle")
    loaded = TTS.from_bundle(tmp_path / "bundle", max_seconds=0.03)
    mem = TTS(model, tok, codec, max_seconds=0.03)
    a, _ = loaded.synthesize("hello there", seed=5)
    b, _ = mem.synthesize("hello there", seed=5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    out = tmp_path / "out.wav"
    summary = infer_main(
        [f"bundle={tmp_path / 'bundle'}", "text=hello there", f"out={out}", "max_seconds=0.03"]
    )
    assert out.is_file() and summary["seconds"] > 0
    with pytest.raises(ValueError, match="unknown option"):
        infer_main([f"bundle={tmp_path / 'bundle'}", "text=hi", "colour=red"])
