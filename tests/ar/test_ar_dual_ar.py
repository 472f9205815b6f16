import math
from pathlib import Path

import pytest
import torch
import yaml

from s2train.ar import PRESETS, DualAR, DualARConfig, count_params, preset


def test_shapes(tiny_model, tiny_cfg, random_batch):
    tokens, codes, audio = random_batch(tiny_cfg)
    out = tiny_model(tokens, codes, audio)
    assert out.logits.shape == (2, 12, tiny_cfg.vocab_size)
    assert out.hidden.shape == (2, 12, tiny_cfg.dim)
    fast = tiny_model.fast_forward(out.hidden[:, 3], codes[:, :, 4])
    assert fast.shape == (2, tiny_cfg.num_codebooks, tiny_cfg.codebook_size)


def test_slow_is_causal(tiny_model, tiny_cfg, random_batch):
    tokens, codes, audio = random_batch(tiny_cfg, b=1)
    base = tiny_model(tokens, codes, audio).logits
    tokens2, codes2 = tokens.clone(), codes.clone()
    tokens2[0, 8:] = 1
    codes2[0, :, 8:] = 3
    out = tiny_model(tokens2, codes2, audio).logits
    assert torch.allclose(out[0, :8], base[0, :8], atol=1e-5)
    assert not torch.allclose(out[0, 8:], base[0, 8:], atol=1e-3)


def test_fast_is_causal_over_codebooks(tiny_model, tiny_cfg):
    h = torch.randn(3, tiny_cfg.dim)
    codes = torch.randint(0, 64, (3, tiny_cfg.num_codebooks))
    base = tiny_model.fast_forward(h, codes)
    codes2 = codes.clone()
    codes2[:, 2] = (codes2[:, 2] + 1) % 64
    out = tiny_model.fast_forward(h, codes2)
    # Changing q2 only affects predictions of q3.. (input position 3 onward).
    assert torch.allclose(out[:, :3], base[:, :3], atol=1e-5)
    assert not torch.allclose(out[:, 3:], base[:, 3:], atol=1e-4)
    # The last code is never an input.
    codes3 = codes.clone()
    codes3[:, -1] = (codes3[:, -1] + 1) % 64
    assert torch.equal(tiny_model.fast_forward(h, codes3), base)


def test_embed_scaling(tiny_model, tiny_cfg, random_batch):
    tokens, codes, audio = random_batch(tiny_cfg, b=1)
    x = tiny_model.embed(tokens, codes, audio)
    k = tiny_cfg.num_codebooks
    e_tok = tiny_model.slow.tok_emb.weight
    e_cb = tiny_model.slow.codebook_emb.weight
    for t in range(tokens.shape[1]):
        if audio[0, t]:
            want = e_tok[tokens[0, t]] + sum(
                e_cb[i * tiny_cfg.codebook_size + codes[0, i, t]] for i in range(k)
            )
            want = want / math.sqrt(k + 1)
        else:
            want = e_tok[tokens[0, t]]
        assert torch.allclose(x[0, t], want, atol=1e-6), t


def test_embed_ignores_codes_at_text_positions(tiny_model, tiny_cfg, random_batch):
    tokens, codes, audio = random_batch(tiny_cfg, b=1)
    codes2 = codes.clone()
    codes2[:, :, ~audio[0]] = -5  # garbage allowed at text positions
    assert torch.equal(tiny_model.embed(tokens, codes, audio), tiny_model.embed(tokens, codes2, audio))


def test_audio_input_dropout_hides_some_audio_frames_in_training_only(tiny_cfg, random_batch):
    tokens, codes, audio = random_batch(tiny_cfg, b=4, n=64)
    torch.manual_seed(0)
    model = DualAR(DualARConfig.from_dict(tiny_cfg.to_dict(), audio_input_dropout=0.5))
    plain = model.eval().embed(tokens, codes, audio)
    torch.manual_seed(1)
    dropped = model.train().embed(tokens, codes, audio)
    zero = dropped.abs().sum(-1) == 0
    assert not zero[~audio].any()  # text positions are never dropped
    assert torch.equal(dropped[~zero], plain[~zero])  # kept positions are untouched (no rescaling)
    frac = zero[audio].float().mean().item()
    assert 0.35 < frac < 0.65, frac
    with pytest.raises(ValueError, match="audio_input_dropout"):
        DualARConfig.from_dict(tiny_cfg.to_dict(), audio_input_dropout=1.0).validate()


def test_document_ids_equal_separate_forwards(tiny_model, tiny_cfg, random_batch):
    tokens, codes, audio = random_batch(tiny_cfg, b=1, n=10)
    doc = torch.tensor([[0] * 4 + [1] * 6])
    packed = tiny_model(tokens, codes, audio, document_ids=doc).logits
    first = tiny_model(tokens[:, :4], codes[:, :, :4], audio[:, :4]).logits
    second = tiny_model(tokens[:, 4:], codes[:, :, 4:], audio[:, 4:]).logits
    assert torch.allclose(packed[:, :4], first, atol=1e-5)
    assert torch.allclose(packed[:, 4:], second, atol=1e-5)


def test_fast_projection_when_dims_differ(tiny_cfg):
    cfg = DualARConfig.from_dict(tiny_cfg.to_dict(), fast_dim=32, fast_head_dim=8, fast_ffn_dim=64)
    m = DualAR(cfg)
    assert isinstance(m.fast.input_proj, torch.nn.Linear)
    assert m.fast_forward(torch.randn(2, cfg.dim), torch.zeros(2, cfg.num_codebooks, dtype=torch.long)).shape == (
        2, cfg.num_codebooks, cfg.codebook_size,
    )  # fmt: skip


def test_tied_embeddings(tiny_model, tiny_cfg):
    assert tiny_model.slow.output is None and tiny_model.slow.output_weight is tiny_model.slow.tok_emb.weight
    untied = DualAR(DualARConfig.from_dict(tiny_cfg.to_dict(), tie_embeddings=False))
    assert untied.slow.output is not None


def test_config_validation_errors(tiny_cfg):
    with pytest.raises(ValueError, match="from the tokenizer"):
        DualAR(preset("tiny"))
    with pytest.raises(ValueError, match="n_kv_heads"):
        DualARConfig.from_dict(tiny_cfg.to_dict(), n_kv_heads=3).validate()
    with pytest.raises(ValueError, match="unknown keys"):
        DualARConfig.from_dict({"dimm": 3})
    with pytest.raises(ValueError, match="semantic range"):
        DualARConfig.from_dict(tiny_cfg.to_dict(), semantic_start=100).validate()
    assert DualARConfig.from_dict(tiny_cfg.to_dict()) == tiny_cfg


def test_s2pro_param_count_on_meta():
    counts = count_params(preset("s2pro"))
    assert 4.3e9 < counts["total"] < 4.7e9, counts
    assert 0.35e9 < counts["fast"] < 0.5e9, counts


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_matches_preset(name):
    path = Path(__file__).parents[2] / "configs" / "model" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    cfg = DualARConfig.from_dict(data)
    assert cfg == preset(name)


def test_device_context_places_every_buffer(tiny_cfg):
    with torch.device("meta"):
        m = DualAR(tiny_cfg)
    assert {t.device.type for t in list(m.parameters()) + list(m.buffers())} == {"meta"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_range_logits_equal_selected_logits(tiny_model, tiny_cfg, dtype):
    """The decode loop's semantic-range view gives the same logits as selecting those head rows."""
    model = tiny_model.to(dtype)
    hidden = torch.randn(3, tiny_cfg.dim).to(dtype)
    stop = torch.tensor([2])
    ids = torch.cat(
        [torch.arange(tiny_cfg.semantic_start, tiny_cfg.semantic_start + tiny_cfg.num_semantic), stop]
    )
    want = model.slow.logits(hidden, ids)
    got = model.slow.range_logits(hidden, tiny_cfg.semantic_start, tiny_cfg.num_semantic, stop)
    assert got.shape == (3, tiny_cfg.num_semantic + 1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-2)
