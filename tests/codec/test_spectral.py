"""Spectral codec ends (``s2train.codec.spectral``): exact iSTFT overlap-add, the decoder delay, streaming."""

import pytest
import torch

from s2train.codec.spectral import ISTFTHead, SpectralEncoder
from tests.codec.conftest import codec_cfg


@pytest.fixture
def istft_codec():
    from s2train.codec import build_codec

    torch.manual_seed(0)
    return build_codec(codec_cfg("tiny_spectral")).eval()


def _causal_stft(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Reference: frame j covers samples [(j + 1) * hop - n_fft, (j + 1) * hop), Hann analysis window."""
    padded = torch.nn.functional.pad(x, (n_fft - hop, 0))
    frames = padded.unfold(-1, n_fft, hop) * torch.hann_window(n_fft, periodic=True, dtype=x.dtype)
    return torch.fft.rfft(frames, dim=-1)  # [..., J, bins]


@pytest.mark.parametrize("n_fft,hop", [(32, 8), (64, 16), (48, 24)])
def test_istft_head_inverts_the_causal_stft_with_its_delay(n_fft, hop):
    """Given the true spectrum, the head returns the input exactly, ``n_fft - hop`` samples late."""
    torch.manual_seed(0)
    x = torch.randn(2, 40 * hop, dtype=torch.float64) * 0.1
    spec = _causal_stft(x, n_fft, hop)  # [B, J, bins]
    feats = torch.cat([spec.abs().clamp_min(1e-12).log(), spec.angle()], dim=-1).transpose(1, 2)
    head = ISTFTHead(n_fft, hop).double()
    y = head(feats)[:, 0]
    d = n_fft - hop
    assert y.shape == x.shape
    torch.testing.assert_close(
        y[:, d:].float(), x[:, :-d].float(), atol=1e-6, rtol=0
    )  # the head runs in fp32


def test_learnable_stft_starts_as_the_dft():
    torch.manual_seed(0)
    enc = SpectralEncoder(32, 8, dim=4, blocks=1, strides=[2], latent_dim=4)
    x = torch.randn(1, 1, 16 * 8)
    re, im = enc.stft(x).chunk(2, dim=1)
    ref = _causal_stft(x[:, 0].double(), 32, 8).transpose(1, 2)[0]
    torch.testing.assert_close(re[0].double(), ref.real, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(im[0].double(), ref.imag, atol=1e-5, rtol=1e-4)


def test_codec_shapes_delay_and_align(istft_codec):
    c = istft_codec
    assert (c.hop_length, c.delay) == (16, 24)
    wav = torch.randn(2, 1, 20 * 16 - 3) * 0.3
    codes = c.encode(wav)
    assert codes.shape == (2, 4, 20)
    out = c.decode(codes)
    assert out.shape == (2, 1, 320) and out.abs().max() <= 1.0
    recon, ref = c.align(out, wav)
    assert recon.shape == ref.shape == (2, 1, 20 * 16 - 3 - 24)
    with pytest.raises(ValueError, match="shorter than the codec delay"):
        c.align(out[..., :10], wav[..., :10])


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_istft_stream_equals_full_decode(istft_codec, chunk):
    torch.manual_seed(0)
    codes = istft_codec.encode(torch.randn(2, 1, 30 * 16) * 0.3)
    full = istft_codec.decode(codes)
    stream = istft_codec.stream_decoder()
    parts = [stream.push(codes[..., i : i + chunk]) for i in range(0, codes.shape[-1], chunk)]
    torch.testing.assert_close(torch.cat(parts, -1), full, atol=1e-5, rtol=0)
    # Guard: without the carried overlap tail the chunk boundaries would differ.
    alone = torch.cat([istft_codec.decode(codes[..., i : i + chunk]) for i in range(0, 30, chunk)], -1)
    assert not torch.allclose(alone, full, atol=1e-5)


def test_istft_chunked_encode_equals_full_encode(istft_codec):
    torch.manual_seed(0)
    wav = torch.randn(2, 1, 30 * 16 - 5) * 0.3
    assert torch.equal(istft_codec.encode(wav, chunk_frames=4), istft_codec.encode(wav))


def test_bad_spectral_configs_name_the_key():
    from s2train.codec import build_codec

    cfg = codec_cfg("tiny_spectral")
    with pytest.raises(ValueError, match="decoder_type='vocos'"):
        build_codec({**cfg, "decoder_type": "vocos"})
    with pytest.raises(ValueError, match="need spectral"):
        build_codec({**cfg, "spectral": None})
    with pytest.raises(ValueError, match="n_fft 30 must be a multiple"):
        build_codec({**cfg, "spectral": {**cfg["spectral"], "n_fft": 30}})
    with pytest.raises(ValueError, match="decoder hop"):
        build_codec({**cfg, "encoder_type": "conv", "strides": [2, 2]})


def test_istft_codec_trains_one_step_and_saves(tmp_path, istft_codec):
    from s2train.codec import load_codec, save_codec

    c = istft_codec.train()
    opt = torch.optim.AdamW(c.parameters(), lr=1e-3)
    wav = torch.randn(2, 1, 8 * 16) * 0.3
    out = c(wav)
    recon, ref = c.align(out.wav, wav)
    loss = (recon - ref).abs().mean() + out.commitment_loss + out.codebook_loss
    loss.backward()
    assert c.encoder.stft.conv.weight.grad is not None and c.decoder.net[-1].weight.grad is not None
    opt.step()
    c.eval()
    save_codec(c, tmp_path / "c")
    back = load_codec(tmp_path / "c")
    assert back.delay == 24
    codes = c.encode(wav)
    torch.testing.assert_close(back.decode(codes), c.decode(codes))
