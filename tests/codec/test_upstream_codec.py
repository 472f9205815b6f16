"""``UpstreamDACCodec`` / ``load_s2_codec``: the released S2 Pro ``codec.pth`` layout, on a miniature codec.

The miniature has the released structure (weight-normed causal convs, Snake, windowed RMSNorm/SwiGLU/RoPE
transformers in the last encoder stage and around the quantizer, semantic + residual factorized VQ,
ConvNeXt down/upsampling, decoder) at tiny widths. The forward checks compare against an independent
functional re-implementation written here from the state dict alone.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from s2train.codec import load_codec, save_codec
from s2train.codec.interface import _registry
from s2train.codec.upstream import (
    TransformerLayer,
    UpstreamDACCodec,
    is_upstream_codec_file,
    load_s2_codec,
    main,
    rope_table,
    save_s2_codec,
)

# Released structure at toy sizes: widths 4 -> 8 -> 16 (latent 16), one 2-head transformer layer in the last
# encoder stage, 1-layer pre/post transformers of width 8 (so input_proj/output_proj exist), semantic 32 +
# 3 x 16 codebooks of dim 4, hop 2 * 2 * 2 = 8 samples.
MINI = dict(
    sample_rate=1000,  # low, so 0.05 s clips (the data loader's minimum) fit the position tables
    encoder_dim=4,
    encoder_rates=[2, 2],
    decoder_dim=16,
    decoder_rates=[2, 2],
    encoder_transformer_layers=[0, 1],
    encoder_window=3,
    encoder_block_size=64,
    n_codebooks=3,
    codebook_size=16,
    semantic_codebook_size=32,
    codebook_dim=4,
    downsample_factor=[2],
    rvq_layers=1,
    rvq_dim=8,
    rvq_heads=1,
    rvq_hidden=12,
    rvq_window=2,
    rvq_block_size=32,
    head_dim=8,
)
HOP = 8


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Spread every parameter away from its init (layer scales, Snake alphas, norms included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("gamma"):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            elif name.endswith("alpha"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith(("original0", "weight_g")):
                p.mul_(0.5 + torch.rand(p.shape, generator=gen))
            elif "norm" in name and p.dim() == 1:
                p.copy_(1 + 0.1 * noise)
            elif name.endswith("bias"):
                p.mul_(0.1)  # small biases, so the codes depend on the input and vary over frames
            else:
                p.add_(0.2 * noise)
    return module


@pytest.fixture
def mini() -> UpstreamDACCodec:
    torch.manual_seed(0)
    return randomize(UpstreamDACCodec(**MINI)).eval()


@pytest.fixture
def pth(mini, tmp_path):
    return save_s2_codec(mini, tmp_path / "codec.pth")


def wav(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    return 0.5 * torch.randn(batch, 1, samples, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------
# Real size (meta device)
# ---------------------------------------------------------------------------------------------------------
def test_released_size_on_meta_device():
    with torch.device("meta"):
        codec = UpstreamDACCodec()
    sd = codec.state_dict()
    # 461 tensors with fused weights (as public GGUF dumps of the S2 Pro codec count them: encoder 128,
    # quantizer 244, decoder 89) + one extra per weight-normed conv: 60 parametrized + 20 legacy = 541.
    assert len(sd) == 541
    assert Counter(k.split(".")[0] for k in sd) == {"encoder": 158, "quantizer": 264, "decoder": 119}
    assert sum(k.endswith("parametrizations.weight.original0") for k in sd) == 60
    assert sum(k.endswith(".weight_g") for k in sd) == 20
    # Measured: 391,430,530 parameters (S2 quotes ~446M for its codec; see docs/s2codec.md).
    assert sum(p.numel() for p in codec.parameters()) == 391_430_530
    shapes = {
        "encoder.block.0.conv.parametrizations.weight.original1": (64, 1, 7),
        "encoder.block.4.block.5.layers.3.attention.wqkv.weight": (3072, 1024),
        "encoder.block.4.block.5.freqs_cis": (16384, 32, 2),
        "encoder.block.6.conv.parametrizations.weight.original1": (1024, 1024, 3),
        "quantizer.downsample.1.1.dwconv.conv.weight": (1024, 1, 7),
        "quantizer.pre_module.layers.7.feed_forward.w2.weight": (1024, 3072),
        "quantizer.post_module.causal_mask": (4096, 4096),
        "quantizer.semantic_quantizer.quantizers.0.codebook.weight": (4096, 8),
        "quantizer.semantic_quantizer.quantizers.0.in_proj.weight_v": (8, 1024, 1),
        "quantizer.quantizer.quantizers.8.out_proj.weight_g": (1024, 1, 1),
        "quantizer.upsample.0.0.conv.weight": (1024, 1024, 2),
        "decoder.model.0.conv.parametrizations.weight.original1": (1536, 1024, 7),
        "decoder.model.1.block.1.conv.parametrizations.weight.original1": (1536, 768, 16),
        "decoder.model.1.block.1.conv.parametrizations.weight.original0": (1536, 1, 1),
        "decoder.model.6.conv.parametrizations.weight.original1": (1, 96, 7),
    }
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    assert sd["encoder.block.4.block.5.freqs_cis"].dtype == torch.bfloat16
    assert codec.hop_length == 2048 and codec.codebook_sizes == [4096] + [1024] * 9
    assert codec.frame_rate == pytest.approx(21.533, abs=1e-3)


def test_registered_for_save_and_load_codec():
    assert _registry()["UpstreamDACCodec"] is UpstreamDACCodec


# ---------------------------------------------------------------------------------------------------------
# codec.pth round trip and key checks
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_is_bit_exact(mini, tmp_path, dtype):
    mini = mini.to(dtype)
    path = save_s2_codec(mini, tmp_path / "codec.pth")
    raw = torch.load(path, weights_only=True)
    assert list(raw) == list(mini.state_dict())  # a plain state dict in module order, nothing else
    loaded = load_s2_codec(path, config=MINI)
    assert not loaded.training
    a, b = mini.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k
    again = torch.load(save_s2_codec(loaded, tmp_path / "again.pth"), weights_only=True)
    assert all(torch.equal(raw[k], again[k]) and raw[k].dtype == again[k].dtype for k in raw)
    assert loaded.weight_dtype == dtype


def test_dtype_argument_casts_parameters_only(mini, tmp_path):
    path = save_s2_codec(mini.to(torch.bfloat16), tmp_path / "codec.pth")
    loaded = load_s2_codec(path, dtype=torch.float32, config=MINI)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert loaded.quantizer.pre_module.freqs_cis.dtype == torch.bfloat16
    ref = mini.state_dict()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ref[k].to(v.dtype)), k


def test_missing_and_unexpected_keys_are_named(pth, tmp_path):
    sd = torch.load(pth, weights_only=True)
    sd.pop("quantizer.quantizer.quantizers.2.codebook.weight")
    sd.pop("encoder.block.1.block.4.conv.bias")
    sd["quantizer.extra_head.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        load_s2_codec(tmp_path / "bad.pth", config=MINI)
    msg = str(err.value)
    assert "unexpected keys 1: quantizer.extra_head.weight" in msg
    assert "missing keys 2:" in msg
    assert (
        "quantizer.quantizer.quantizers.2.codebook.weight" in msg
        and "encoder.block.1.block.4.conv.bias" in msg
    )


def test_wrong_sizes_report_shape_mismatches(pth):
    with pytest.raises(
        ValueError, match=r"shape mismatches .*semantic_quantizer.quantizers.0.codebook.weight"
    ):
        load_s2_codec(pth, config={**MINI, "semantic_codebook_size": 64})
    with pytest.raises(ValueError, match="does not match UpstreamDACCodec"):
        load_s2_codec(pth)  # released sizes vs the miniature file


def test_wrappers_prefixes_and_weight_norm_spellings(mini, pth, tmp_path):
    sd = torch.load(pth, weights_only=True)
    swapped = {}
    for k, v in sd.items():
        k = k.replace(".parametrizations.weight.original0", ".WG").replace(
            ".parametrizations.weight.original1", ".WV"
        )
        k = k.replace(".weight_g", ".parametrizations.weight.original0")
        k = k.replace(".weight_v", ".parametrizations.weight.original1")
        swapped["generator." + k.replace(".WG", ".weight_g").replace(".WV", ".weight_v")] = v
    swapped["discriminator.conv.weight"] = torch.ones(2)
    torch.save({"state_dict": swapped, "epoch": 3}, tmp_path / "lightning.ckpt")
    loaded = load_s2_codec(tmp_path / "lightning.ckpt", config=MINI)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in sd.items())


def test_regenerable_buffers_may_be_absent(mini, pth, tmp_path):
    sd = torch.load(pth, weights_only=True)
    stripped = {k: v for k, v in sd.items() if not k.endswith(("freqs_cis", "causal_mask"))}
    assert len(sd) - len(stripped) == 6
    torch.save(stripped, tmp_path / "stripped.pth")
    loaded = load_s2_codec(tmp_path / "stripped.pth", config=MINI)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in sd.items())


def test_is_upstream_codec_file(pth, tmp_path):
    assert is_upstream_codec_file(pth)
    torch.save({"weight": torch.ones(2)}, tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    assert not is_upstream_codec_file(tmp_path / "other.pth")
    assert not is_upstream_codec_file(tmp_path / "text.pth")
    assert not is_upstream_codec_file(tmp_path)
    assert not is_upstream_codec_file(tmp_path / "absent.pth")


# ---------------------------------------------------------------------------------------------------------
# Independent functional reference (plain torch ops on the state dict)
# ---------------------------------------------------------------------------------------------------------
def ref_wn(sd: dict, prefix: str) -> torch.Tensor:
    """g * v / ||v|| (norm over every dim but 0), for both weight-norm spellings."""
    if prefix + ".weight_g" in sd:
        g, v = sd[prefix + ".weight_g"], sd[prefix + ".weight_v"]
    else:
        g, v = (
            sd[prefix + ".parametrizations.weight.original0"],
            sd[prefix + ".parametrizations.weight.original1"],
        )
    return g * v / v.pow(2).sum(dim=tuple(range(1, v.dim())), keepdim=True).sqrt()


def ref_conv(x, w, b, stride=1, dilation=1, groups=1):
    """Causal conv: pad (k - 1) * dilation + 1 - stride on the left and up to whole strides on the right."""
    left = (w.shape[-1] - 1) * dilation + 1 - stride
    right = math.ceil(x.shape[-1] / stride) * stride - x.shape[-1]
    return F.conv1d(F.pad(x, (left, right)), w, b, stride=stride, dilation=dilation, groups=groups)


def ref_wnconv(sd, prefix, x, **kw):
    return ref_conv(x, ref_wn(sd, prefix), sd[prefix + ".bias"], **kw)


def ref_convt(x, w, b, stride):
    y = F.conv_transpose1d(x, w, b, stride=stride)
    return y[..., : x.shape[-1] * stride]


def ref_snake(x, alpha):
    return x + torch.sin(alpha * x) ** 2 / alpha


def ref_resunit(sd, p, x, dilation):
    y = ref_wnconv(sd, p + "1.conv", ref_snake(x, sd[p + "0.alpha"]), dilation=dilation)
    return x + ref_wnconv(sd, p + "3.conv", ref_snake(y, sd[p + "2.alpha"]))


def ref_rms(x, w, eps=1e-5):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def ref_rope(x, table):
    """Rotate adjacent pairs as complex numbers: [B, T, H, D] x [T, D/2, (cos, sin)]."""
    b, t, h, d = x.shape
    xc = torch.view_as_complex(x.reshape(b, t, h, d // 2, 2).contiguous())
    rot = torch.complex(table[..., 0].float(), table[..., 1].float())[None, :, None]
    return torch.view_as_real(xc * rot).reshape(b, t, h, d)


def ref_layer(sd, p, x, table, heads, kv_heads, head_dim, window):
    """One pre-norm block with an explicit softmax over a windowed causal mask."""
    b, t, _ = x.shape
    h = ref_rms(x, sd[p + "attention_norm.weight"])
    qkv = h @ sd[p + "attention.wqkv.weight"].T
    nq, nk = heads * head_dim, kv_heads * head_dim
    q = ref_rope(qkv[..., :nq].reshape(b, t, heads, head_dim), table)
    k = ref_rope(qkv[..., nq : nq + nk].reshape(b, t, kv_heads, head_dim), table)
    v = qkv[..., nq + nk :].reshape(b, t, kv_heads, head_dim)
    group = torch.arange(heads) // (heads // kv_heads)  # query head -> its key/value head
    k, v = k[:, :, group], v[:, :, group]
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(head_dim)
    pos = torch.arange(t)
    allowed = (pos[None, :] <= pos[:, None]) & (pos[:, None] - pos[None, :] < window)
    att = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    o = torch.einsum("bhts,bshd->bthd", att, v).reshape(b, t, heads * head_dim)
    x = x + (o @ sd[p + "attention.wo.weight"].T) * sd[p + "attention_layer_scale.gamma"]
    f = ref_rms(x, sd[p + "ffn_norm.weight"])
    f = (F.silu(f @ sd[p + "feed_forward.w1.weight"].T) * (f @ sd[p + "feed_forward.w3.weight"].T)) @ sd[
        p + "feed_forward.w2.weight"
    ].T
    return x + f * sd[p + "ffn_layer_scale.gamma"]


def ref_transformer(sd, p, x, n_layers, heads, head_dim, window):
    """[B, C, T] -> [B, C, T] through optional input/output projections, the layers and the final norm."""
    h = x.transpose(1, 2)
    if p + "input_proj.weight" in sd:
        h = h @ sd[p + "input_proj.weight"].T + sd[p + "input_proj.bias"]
    table = sd[p + "freqs_cis"][: h.shape[1]]
    for i in range(n_layers):
        h = ref_layer(sd, f"{p}layers.{i}.", h, table, heads, heads, head_dim, window)
    h = ref_rms(h, sd[p + "norm.weight"])
    if p + "output_proj.weight" in sd:
        h = h @ sd[p + "output_proj.weight"].T + sd[p + "output_proj.bias"]
    return h.transpose(1, 2)


def ref_convnext(sd, p, x):
    h = ref_conv(x, sd[p + "dwconv.conv.weight"], sd[p + "dwconv.conv.bias"], groups=x.shape[1]).transpose(
        1, 2
    )
    h = F.layer_norm(h, (h.shape[-1],), sd[p + "norm.weight"], sd[p + "norm.bias"], eps=1e-6)
    h = F.gelu(h @ sd[p + "pwconv1.weight"].T + sd[p + "pwconv1.bias"])
    h = (h @ sd[p + "pwconv2.weight"].T + sd[p + "pwconv2.bias"]) * sd[p + "gamma"]
    return x + h.transpose(1, 2)


def ref_vq(sd, p, x):
    """One factorized codebook: in_proj, cosine nearest entry, raw entry, out_proj. Returns (out, codes)."""
    z_e = F.conv1d(x, ref_wn(sd, p + "in_proj"), sd[p + "in_proj.bias"])
    book = sd[p + "codebook.weight"]
    cos = torch.einsum("bdt,nd->btn", F.normalize(z_e, dim=1), F.normalize(book, dim=1))
    codes = cos.argmax(-1)
    return ref_vq_lookup(sd, p, codes), codes


def ref_vq_lookup(sd, p, codes):
    return F.conv1d(
        sd[p + "codebook.weight"][codes].transpose(1, 2), ref_wn(sd, p + "out_proj"), sd[p + "out_proj.bias"]
    )


def ref_encode(sd, x, cfg=MINI):
    """Waveform [B, 1, S] (whole frames) -> codes [B, 1 + n, S / hop], all from the state dict."""
    hd = cfg["head_dim"]
    h = ref_wnconv(sd, "encoder.block.0.conv", x)
    width = cfg["encoder_dim"]
    for i, (stride, layers) in enumerate(
        zip(cfg["encoder_rates"], cfg["encoder_transformer_layers"]), start=1
    ):
        width *= 2
        p = f"encoder.block.{i}.block."
        for j, d in enumerate((1, 3, 9)):
            h = ref_resunit(sd, f"{p}{j}.block.", h, d)
        h = ref_wnconv(sd, p + "4.conv", ref_snake(h, sd[p + "3.alpha"]), stride=stride)
        if layers:
            h = ref_transformer(sd, p + "5.", h, layers, width // hd, hd, cfg["encoder_window"])
    n = len(cfg["encoder_rates"])
    h = ref_wnconv(sd, f"encoder.block.{n + 2}.conv", ref_snake(h, sd[f"encoder.block.{n + 1}.alpha"]))
    for i, f in enumerate(cfg["downsample_factor"]):
        p = f"quantizer.downsample.{i}."
        h = ref_conv(h, sd[p + "0.conv.weight"], sd[p + "0.conv.bias"], stride=f)
        h = ref_convnext(sd, p + "1.", h)
    h = ref_transformer(
        sd, "quantizer.pre_module.", h, cfg["rvq_layers"], cfg["rvq_heads"], hd, cfg["rvq_window"]
    )
    sem, first = ref_vq(sd, "quantizer.semantic_quantizer.quantizers.0.", h)
    residual, codes = h - sem, [first]
    for i in range(cfg["n_codebooks"]):
        out, c = ref_vq(sd, f"quantizer.quantizer.quantizers.{i}.", residual)
        residual, codes = residual - out, [*codes, c]
    return torch.stack(codes, dim=1)


def ref_decode(sd, codes, cfg=MINI):
    """Codes [B, K, T] -> waveform [B, 1, T * hop], all from the state dict."""
    hd = cfg["head_dim"]
    z = ref_vq_lookup(sd, "quantizer.semantic_quantizer.quantizers.0.", codes[:, 0])
    for i in range(codes.shape[1] - 1):
        z = z + ref_vq_lookup(sd, f"quantizer.quantizer.quantizers.{i}.", codes[:, i + 1])
    z = ref_transformer(
        sd, "quantizer.post_module.", z, cfg["rvq_layers"], cfg["rvq_heads"], hd, cfg["rvq_window"]
    )
    for i, f in enumerate(reversed(cfg["downsample_factor"])):
        p = f"quantizer.upsample.{i}."
        z = ref_convnext(sd, p + "1.", ref_convt(z, sd[p + "0.conv.weight"], sd[p + "0.conv.bias"], f))
    h = ref_wnconv(sd, "decoder.model.0.conv", z)
    for i, stride in enumerate(cfg["decoder_rates"], start=1):
        p = f"decoder.model.{i}.block."
        h = ref_snake(h, sd[p + "0.alpha"])
        h = ref_convt(h, ref_wn(sd, p + "1.conv"), sd[p + "1.conv.bias"], stride)
        for j, d in enumerate((1, 3, 9)):
            h = ref_resunit(sd, f"{p}{j + 2}.block.", h, d)
    n = len(cfg["decoder_rates"])
    h = ref_snake(h, sd[f"decoder.model.{n + 1}.alpha"])
    return torch.tanh(ref_wnconv(sd, f"decoder.model.{n + 2}.conv", h))


def test_weight_normed_conv_matches_reference(mini):
    sd = mini.state_dict()
    conv = mini.encoder.block[1].block[1].block[1]  # dilation 3, kernel 7
    x = torch.randn(2, 4, 19)
    want = ref_wnconv(sd, "encoder.block.1.block.1.block.1.conv", x, dilation=3)
    torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-5)
    strided = mini.encoder.block[2].block[4]  # stride 2, kernel 4, odd input length
    x = torch.randn(2, 8, 11)
    want = ref_wnconv(sd, "encoder.block.2.block.4.conv", x, stride=2)
    assert want.shape[-1] == 6
    torch.testing.assert_close(strided(x), want, rtol=1e-5, atol=1e-5)


def test_quantizer_matches_reference(mini):
    sd = mini.state_dict()
    q = mini.quantizer
    z = torch.randn(2, 16, 9)
    part, first = q.semantic_quantizer.quantize(z)
    want_part, want_first = ref_vq(sd, "quantizer.semantic_quantizer.quantizers.0.", z)
    assert torch.equal(first[:, 0], want_first)
    torch.testing.assert_close(part, want_part, rtol=1e-5, atol=1e-5)
    total, codes = q.quantizer.quantize(z - part)
    residual, want_total = z - part, 0
    for i in range(3):
        out, c = ref_vq(sd, f"quantizer.quantizer.quantizers.{i}.", residual)
        assert torch.equal(codes[:, i], c), i
        residual, want_total = residual - out, want_total + out
    torch.testing.assert_close(total, want_total, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(q.quantizer.lookup(codes), want_total, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_transformer_block_matches_reference(kv_heads):
    torch.manual_seed(1)
    layer = randomize(
        TransformerLayer(dim=16, heads=2, kv_heads=kv_heads, head_dim=8, hidden=24, eps=1e-5), 1
    )
    sd = {k: v.detach() for k, v in layer.state_dict().items()}
    x = torch.randn(2, 7, 16)
    table = rope_table(7, 8, 10000)
    i = torch.arange(7)
    mask = (i[None] <= i[:, None]) & (i[:, None] - i[None] < 3)
    want = ref_layer(sd, "", x, table, 2, kv_heads, 8, window=3)
    torch.testing.assert_close(layer(x, table, mask), want, rtol=1e-5, atol=1e-5)


def test_rope_table_is_bf16_rounded_cos_sin():
    table = rope_table(64, 8, 10000)
    angles = torch.arange(64, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, 8, 2) / 8)
    want = torch.stack([angles.cos(), angles.sin()], dim=-1)
    assert table.dtype == torch.bfloat16 and table.shape == (64, 4, 2)
    assert (table.double() - want).abs().max() <= 2**-8  # bf16 rounding of values in [-1, 1]


def test_full_encode_and_decode_match_reference(mini):
    sd = {k: v.detach() for k, v in mini.state_dict().items()}
    x = wav(2, 13 * HOP)
    codes = mini.encode(x)
    assert torch.equal(codes, ref_encode(sd, x))
    assert all(len(codes[:, k].unique()) >= 4 for k in range(4))  # not a degenerate constant code stream
    torch.testing.assert_close(mini.decode(codes), ref_decode(sd, codes), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Codec interface
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("samples", [1, 7, 8, 9, 100])
def test_encode_decode_shapes(mini, samples):
    codes = mini.encode(wav(2, samples), sample_rate=1000)
    frames = max(1, math.ceil(samples / HOP))
    assert codes.shape == (2, 4, frames) and codes.dtype == torch.int64
    assert int(codes[:, 0].max()) < 32 and int(codes[:, 1:].max()) < 16
    out = mini.decode(codes)
    assert out.shape == (2, 1, frames * HOP) and out.dtype == torch.float32
    assert out.abs().max() <= 1
    assert mini.decode(codes[:, :1]).shape == (2, 1, frames * HOP)  # coarser decode with fewer codebooks


def test_right_padding_keeps_earlier_frames(mini):
    x = wav(1, 10 * HOP)
    assert torch.equal(mini.encode(x[..., : 6 * HOP]), mini.encode(x)[..., :6])


def test_invalid_inputs_raise(mini):
    codes = mini.encode(wav(1, 4 * HOP))
    bad = codes.clone()
    bad[0, 0, 1] = 32
    with pytest.raises(ValueError, match=r"codebook 0: code 32 out of range \[0, 32\)"):
        mini.decode(bad)
    bad = codes.clone()
    bad[0, 2, 0] = 16
    with pytest.raises(ValueError, match=r"codebook 2: code 16 out of range \[0, 16\)"):
        mini.decode(bad)
    bad[0, 2, 0] = -1
    with pytest.raises(ValueError, match="codebook 2: code -1"):
        mini.decode(bad)
    with pytest.raises(ValueError, match="integers"):
        mini.decode(codes.float())
    with pytest.raises(ValueError, match="K <= 4"):
        mini.decode(torch.zeros(1, 5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="resample first"):
        mini.encode(wav(1, 16), sample_rate=16000)
    with pytest.raises(ValueError, match=r"\[B, 1, S\]"):
        mini.encode(torch.zeros(1, 2, 16))
    with pytest.raises(ValueError, match="position table"):
        mini.encode(wav(1, 40 * HOP))  # 80 encoder-transformer steps > block_size 64


def test_stream_decoder_matches_decode(mini):
    codes = mini.encode(wav(2, 9 * HOP))
    stream = mini.stream_decoder()
    chunks = [stream.push(codes[..., a:b]) for a, b in [(0, 1), (1, 4), (4, 5), (5, 9)]]
    assert [c.shape[-1] for c in chunks] == [HOP, 3 * HOP, HOP, 4 * HOP]
    torch.testing.assert_close(torch.cat(chunks, dim=-1), mini.decode(codes), rtol=1e-5, atol=1e-5)
    stream.reset()
    assert stream.frames == 0 and stream.push(codes[..., :2]).shape == (2, 1, 2 * HOP)


def test_save_codec_and_converter_cli(mini, pth, tmp_path):
    out = tmp_path / "s2codec"
    main(["convert", str(pth), str(out), "--config", json.dumps(MINI)])
    meta = json.loads((out / "config.json").read_text())
    assert meta["class"] == "UpstreamDACCodec" and meta["config"]["codebook_size"] == 16
    codec = load_codec(out)
    assert isinstance(codec, UpstreamDACCodec)
    assert all(torch.equal(v, mini.state_dict()[k]) for k, v in codec.state_dict().items())
    x = wav(1, 12 * HOP)
    codes = mini.encode(x)
    assert torch.equal(codec.encode(x), codes)
    assert torch.equal(codec.decode(codes), mini.decode(codes))
    # A JSON file works as --config too; fp16 storage loads back (rounded) through the same path.
    (tmp_path / "mini.json").write_text(json.dumps(MINI))
    main(["convert", str(pth), str(tmp_path / "half"), "--config", str(tmp_path / "mini.json"), "--fp16"])
    assert json.loads((tmp_path / "half" / "config.json").read_text())["dtype"] == "float16"
    assert load_codec(tmp_path / "half").encode(x).shape == codes.shape
    save_codec(mini, tmp_path / "direct")
    assert torch.equal(load_codec(tmp_path / "direct").encode(x), codes)


def test_converted_folder_feeds_the_dataset_encoder(mini, pth, tmp_path):
    """``python -m s2train.data.encode codec=<converted dir>`` path: same codes as encoding directly."""
    pytest.importorskip("datasets")
    sf = pytest.importorskip("soundfile")
    from s2train.data.encode import encode_manifest
    from s2train.data.manifest import ManifestItem, write_manifest

    out = tmp_path / "s2codec"
    main(["convert", str(pth), str(out), "--config", json.dumps(MINI)])
    items, clips = [], []
    for i, n in enumerate([60, 93]):
        clip = wav(1, n, seed=i)[0, 0]
        sf.write(tmp_path / f"u{i}.wav", clip.numpy(), 1000, subtype="FLOAT")
        items.append(ManifestItem(f"u{i}", str(tmp_path / f"u{i}.wav"), f"text {i}", "spk0"))
        clips.append(clip)
    manifest = write_manifest(items, tmp_path / "manifest.jsonl")
    summary = encode_manifest(out, manifest, tmp_path / "codes", batch_size=2)
    assert summary["encoded"] == 2 and summary["num_codebooks"] == 4
    import datasets

    ds = datasets.load_from_disk(str(tmp_path / "codes"))
    for row, clip in zip(ds, clips):
        assert torch.equal(torch.tensor(row["codes"]), mini.encode(clip[None, None])[0])


def test_load_codec_dispatches_released_pth(mini, pth, tmp_path, monkeypatch):
    """``load_codec`` takes a codec.pth, or a folder holding one (the downloaded s2-pro dir), as upstream."""
    import s2train.codec.upstream as up
    from s2train.codec import load_codec, save_codec

    seen = []
    monkeypatch.setattr(up, "load_s2_codec", lambda p, device="cpu", dtype=None: seen.append(p) or mini)
    assert load_codec(pth) is mini and load_codec(pth.parent) is mini
    assert seen == [pth, pth]
    (pth.parent / "config.json").write_text('{"model_type": "fish_qwen3_omni"}')  # the released dir's config
    (pth.parent / "model.safetensors").write_bytes(b"")
    assert load_codec(pth.parent) is mini and len(seen) == 3
    folder = save_codec(mini, tmp_path / "s2train_folder")  # a save_codec folder never goes upstream
    (folder / "codec.pth").write_bytes(b"")
    assert isinstance(load_codec(folder), UpstreamDACCodec) and len(seen) == 3
