"""Streaming decode equals the full decode for any chunking."""

import pytest
import torch


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_stream_equals_full_decode(tiny_codec, chunk):
    torch.manual_seed(0)
    # 30 frames > the transformer window (8), so the attention cache is exercised beyond its size.
    codes = tiny_codec.encode(torch.randn(2, 1, 30 * tiny_codec.hop_length) * 0.3)
    full = tiny_codec.decode(codes)
    stream = tiny_codec.stream_decoder()
    parts = [stream.push(codes[..., i : i + chunk]) for i in range(0, codes.shape[-1], chunk)]
    for p, i in zip(parts, range(0, codes.shape[-1], chunk)):
        assert p.shape[-1] == min(chunk, codes.shape[-1] - i) * tiny_codec.hop_length
    assert torch.allclose(torch.cat(parts, -1), full, atol=1e-5)


def test_streams_are_independent_and_resettable(tiny_codec):
    torch.manual_seed(0)
    codes = tiny_codec.encode(torch.randn(1, 1, 12 * tiny_codec.hop_length) * 0.3)
    full = tiny_codec.decode(codes)
    a, b = tiny_codec.stream_decoder(), tiny_codec.stream_decoder()
    out_a, out_b = [], []
    for i in range(codes.shape[-1]):  # interleave two streams on one model
        out_a.append(a.push(codes[..., i : i + 1]))
        out_b.append(b.push(codes[..., i : i + 1]))
    assert torch.allclose(torch.cat(out_a, -1), full, atol=1e-5)
    assert torch.allclose(torch.cat(out_b, -1), full, atol=1e-5)
    a.reset()
    assert torch.allclose(a.push(codes[..., :3]), full[..., : 3 * tiny_codec.hop_length], atol=1e-5)


def test_stream_without_state_would_differ(tiny_codec):
    """Guards the test above: decoding a chunk without context does not match, so the cache matters."""
    torch.manual_seed(0)
    codes = tiny_codec.encode(torch.randn(1, 1, 12 * tiny_codec.hop_length) * 0.3)
    full = tiny_codec.decode(codes)
    alone = tiny_codec.decode(codes[..., 6:])
    assert not torch.allclose(alone, full[..., 6 * tiny_codec.hop_length :], atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_chunked_encode_equals_full_encode(tiny_codec, chunk):
    torch.manual_seed(0)
    wav = torch.randn(2, 1, 30 * tiny_codec.hop_length - 5) * 0.3
    full = tiny_codec.encode(wav)
    assert torch.equal(tiny_codec.encode(wav, chunk_frames=chunk), full)


def test_stream_encoder_rejects_partial_frames(tiny_codec):
    from s2train.codec import StreamEncoder

    with pytest.raises(ValueError, match="multiple of the hop"):
        StreamEncoder(tiny_codec).push(torch.zeros(1, 1, tiny_codec.hop_length + 1))
