"""Audio metrics and codec losses on known cases."""

import math

import pytest
import torch

from s2train.codec.discriminators import CodecDiscriminator
from s2train.codec.losses import discriminator_loss, feature_matching_loss, generator_adv_loss
from s2train.eval.metrics.audio import codebook_usage, multiscale_mel_distance, si_sdr, stft_distance


@pytest.fixture
def sig():
    torch.manual_seed(0)
    t = torch.arange(8000) / 16000
    return (0.5 * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.randn(8000)).view(1, 1, -1)


def test_distances_zero_for_identical_and_grow_with_noise(sig):
    small = sig + 0.01 * torch.randn_like(sig)
    big = sig + 0.3 * torch.randn_like(sig)
    assert multiscale_mel_distance(sig, sig, 16000) == 0.0
    assert stft_distance(sig, sig) == 0.0
    assert 0 < multiscale_mel_distance(sig, small, 16000) < multiscale_mel_distance(sig, big, 16000)
    assert 0 < stft_distance(sig, small) < stft_distance(sig, big)


def test_si_sdr_known_values(sig):
    assert si_sdr(sig, sig) > 80
    noise = torch.randn_like(sig)
    noise = noise - noise.mean()
    # Orthogonalize so the expected value is exact: 10 log10(|s|^2 / |n|^2).
    s = sig - sig.mean()
    noise = noise - (noise * s).sum() / (s * s).sum() * s
    noise = noise * (s.norm() / noise.norm()) / 10  # 20 dB below the signal
    assert si_sdr(s + noise, s) == pytest.approx(20.0, abs=1e-3)
    assert si_sdr(3.0 * (s + noise), s) == pytest.approx(si_sdr(s + noise, s), abs=1e-6)
    assert si_sdr(-0.5 * (s + noise), s) == pytest.approx(20.0, abs=1e-3)


def test_codebook_usage_uniform_and_collapsed():
    codes = torch.stack([torch.arange(64).repeat(2), torch.zeros(128, dtype=torch.long)])[None]  # [1, 2, 128]
    used, ppl = codebook_usage(codes, [64, 256])
    assert used == [1.0, 1 / 256]
    assert ppl[0] == pytest.approx(64.0) and ppl[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 codebooks"):
        codebook_usage(codes, [64])


def test_gan_losses_shapes_and_signs():
    torch.manual_seed(0)
    disc = CodecDiscriminator(
        periods=[2, 3], period_channels=[4, 8], stft_ffts=[128], complex_ffts=[64], spec_channels=4
    )
    real, fake = torch.randn(2, 1, 1000), torch.randn(2, 1, 1000)
    out_r, out_f = disc(real), disc(fake)
    assert len(out_r) == 4 and all(logits.shape[0] == 2 for logits, _ in out_r)
    assert feature_matching_loss(out_r, out_r) == 0
    assert feature_matching_loss(out_r, out_f) > 0
    for kind in ("hinge", "lsgan"):
        assert generator_adv_loss(out_f, kind) >= 0 and discriminator_loss(out_r, out_f, kind) >= 0
    with pytest.raises(ValueError, match="unknown adversarial"):
        generator_adv_loss(out_f, "wgan")
