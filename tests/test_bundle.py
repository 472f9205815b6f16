"""Bundle export -> load_pretrained round trip (no Lightning/Hydra on the load path)."""

import json

import pytest
import torch

from s2train.ar import DualAR, preset
from s2train.bundle import export_bundle, load_init_weights, load_pretrained
from s2train.lit.lora import apply_lora
from s2train.text import S2Tokenizer


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Single-threaded tiny models (see tests/conftest.py::one_thread)."""


@pytest.fixture(scope="module")
def tok():
    return S2Tokenizer.train(["hello there", "general kenobi"] * 5, vocab_size=270, num_semantic=32)


def _model(tok, seed=0):
    torch.manual_seed(seed)
    cfg = preset("tiny", vocab_size=tok.vocab_size, semantic_start=tok.semantic_start, num_semantic=32,
                 dim=32, n_heads=2, n_kv_heads=1, ffn_dim=64, fast_dim=32, fast_n_heads=2, fast_n_kv_heads=1,
                 fast_ffn_dim=64, max_seq_len=64)  # fmt: skip
    return DualAR(cfg).eval()


def test_roundtrip_identical_logits(tok, tmp_path):
    model = _model(tok)
    codec = tmp_path / "codec"
    codec.mkdir()
    (codec / "config.json").write_text("{}")
    out = export_bundle(model, None, tok, codec, tmp_path / "bundle", copy_codec=True, metadata={"step": 7})
    doc = json.loads((out / "config.json").read_text())
    assert doc["model"]["vocab_size"] == tok.vocab_size and doc["metadata"]["step"] == 7
    loaded, tok2, codec_dir = load_pretrained(out)
    assert codec_dir == out / "codec" and (codec_dir / "config.json").is_file()
    assert tok2.encode("hello <|im_end|>") == tok.encode("hello <|im_end|>")
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 32, (2, 4, 10), generator=g)
    audio = torch.zeros(2, 10, dtype=torch.bool)
    audio[:, 4:] = True
    tokens = torch.where(audio, codes[:, 0] + tok.semantic_start, torch.randint(0, 100, (2, 10), generator=g))
    with torch.no_grad():
        a, b = model(tokens, codes, audio), loaded(tokens, codes, audio)
        assert torch.equal(a.logits, b.logits) and torch.equal(a.hidden, b.hidden)
        h = a.hidden[:, 3:-1].reshape(-1, 32)
        f = codes[:, :, 4:].transpose(1, 2).reshape(-1, 4)
        assert torch.equal(model.fast_forward(h, f), loaded.fast_forward(h, f))
    # The bundle also serves as init_from.
    other = _model(tok, seed=1)
    load_init_weights(other, out)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())


def test_reference_codec_and_errors(tok, tmp_path):
    model = _model(tok)
    out = export_bundle(model, model.config, tok, tmp_path, tmp_path / "b")
    assert load_pretrained(out)[2] == tmp_path.resolve()
    with pytest.raises(ValueError, match="LoRA"):
        export_bundle(apply_lora(_model(tok), "mlp_rslora"), None, tok, None, tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="codec dir"):
        export_bundle(model, None, tok, tmp_path / "nope", tmp_path / "d")
    with pytest.raises(FileNotFoundError):
        load_pretrained(tmp_path / "missing")


def test_relative_codec_path_resolves_against_the_bundle(tok, tmp_path):
    """A shipped bundle names its codec relative to itself ("../codec"), so it works from any checkout."""
    import json

    codec = tmp_path / "ship" / "codec"
    codec.mkdir(parents=True)
    out = export_bundle(_model(tok), None, tok, codec, tmp_path / "ship" / "dualar")
    doc = json.loads((out / "config.json").read_text())
    doc["codec"] = {"path": "../codec", "copied": False}
    (out / "config.json").write_text(json.dumps(doc))
    assert load_pretrained(out)[2].resolve() == codec.resolve()
