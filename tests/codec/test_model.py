"""DACStyleCodec: shapes, frame rates, causality, input checks, save/load."""

import math

import pytest
import torch

from s2train.codec import Codec, build_codec, load_codec, save_codec

from .conftest import codec_cfg


@pytest.mark.parametrize("name,rate,hop,k", [("tiny", 16000, 16, 4), ("demo", 16000, 640, 8)])
def test_shapes_and_frame_rate(name, rate, hop, k):
    torch.manual_seed(0)
    codec = build_codec(codec_cfg(name)).eval()
    assert isinstance(codec, Codec)
    assert (codec.sample_rate, codec.hop_length, codec.num_codebooks) == (rate, hop, k)
    assert codec.frame_rate == pytest.approx(rate / hop)
    s = 3 * hop + 5
    codes = codec.encode(torch.randn(2, 1, s) * 0.1)
    assert codes.dtype == torch.long and codes.shape == (2, k, math.ceil(s / hop))
    for i, size in enumerate(codec.codebook_sizes):
        assert 0 <= int(codes[:, i].min()) and int(codes[:, i].max()) < size
    wav = codec.decode(codes)
    assert wav.shape == (2, 1, codes.shape[-1] * hop)
    assert wav.abs().max() <= 1.0


def test_encoder_and_decoder_are_causal(tiny_codec):
    hop = tiny_codec.hop_length
    torch.manual_seed(1)
    x = torch.randn(1, 1, 40 * hop) * 0.3
    y = x.clone()
    y[..., 20 * hop :] = torch.randn(1, 1, 20 * hop)  # change only the future
    cx, cy = tiny_codec.encode(x), tiny_codec.encode(y)
    assert torch.equal(cx[..., :20], cy[..., :20])
    assert not torch.equal(cx[..., 20:], cy[..., 20:])
    with torch.no_grad():
        z = tiny_codec.latent(x)
        z2 = z.clone()
        z2[..., 20:] += 1.0
        wx, wy = tiny_codec.decode_latent(z), tiny_codec.decode_latent(z2)
    assert torch.allclose(wx[..., : 20 * hop], wy[..., : 20 * hop], atol=1e-6)
    assert not torch.allclose(wx[..., 20 * hop :], wy[..., 20 * hop :])


def test_short_input_padded_to_one_frame(tiny_codec):
    codes = tiny_codec.encode(torch.randn(1, 1, 3) * 0.1)
    assert codes.shape == (1, tiny_codec.num_codebooks, 1)


def test_bad_inputs_raise_clear_errors(tiny_codec):
    x = torch.zeros(1, 1, 64)
    x[0, 0, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tiny_codec.encode(x)
    with pytest.raises(ValueError, match="resample"):
        tiny_codec.encode(torch.zeros(1, 1, 64), sample_rate=44100)
    tiny_codec.encode(torch.zeros(1, 1, 64), sample_rate=16000)  # matching rate is fine; silence encodes
    with pytest.raises(ValueError, match=r"\[B, 1, S\]"):
        tiny_codec.encode(torch.zeros(1, 64))


def test_out_of_range_codes_rejected(tiny_codec):
    codes = torch.zeros(1, 4, 5, dtype=torch.long)
    codes[0, 2, 3] = 32  # codebook 2 has 32 entries
    with pytest.raises(ValueError, match=r"codebook 2: code 32 out of range \[0, 32\)"):
        tiny_codec.decode(codes)
    codes[0, 2, 3] = 0
    codes[0, 0, 1] = -1
    with pytest.raises(ValueError, match="codebook 0: code -1"):
        tiny_codec.decode(codes)
    with pytest.raises(ValueError, match="codebook 1"):
        tiny_codec.stream_decoder().push(
            torch.full((1, 4, 2), 40).clamp(max=63) * torch.tensor([0, 1, 0, 0])[None, :, None]
        )


@pytest.mark.parametrize("fp16", [False, True])
def test_save_load_round_trip(tiny_codec, tmp_path, fp16):
    save_codec(tiny_codec, tmp_path, fp16=fp16)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    loaded = load_codec(tmp_path)
    x = torch.randn(1, 1, 400) * 0.2
    codes = tiny_codec.encode(x)
    if fp16:
        assert all(p.dtype == torch.float32 for p in loaded.parameters())
        assert (loaded.encode(x) == codes).float().mean() > 0.9
    else:
        assert torch.equal(loaded.encode(x), codes)
        assert torch.allclose(loaded.decode(codes), tiny_codec.decode(codes), atol=1e-6)


def test_load_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_codec(tmp_path)
