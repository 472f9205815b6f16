"""Sizes: the S2-size codec checked on the meta device (no memory), the demo size, import hygiene."""

import subprocess
import sys

import pytest
import torch

from s2train.codec import build_codec

from .conftest import codec_cfg


@pytest.fixture(scope="module")
def s2_codec():
    with torch.device("meta"):
        return build_codec(codec_cfg("s2"))


def test_s2_param_count_close_to_446m(s2_codec):
    n = sum(p.numel() for p in s2_codec.parameters())
    assert abs(n - 446e6) / 446e6 < 0.10, n


def test_s2_frame_rate(s2_codec):
    assert s2_codec.hop_length == 2048 and s2_codec.codebook_sizes == [4096] + [1024] * 9
    assert s2_codec.frame_rate == pytest.approx(21.53, abs=0.01)


@pytest.mark.parametrize("name,low,high", [("demo", 8e6, 16e6), ("demo_conv", 1e6, 10e6)])
def test_demo_sizes_stay_cpu_sized(name, low, high):
    codec = build_codec(codec_cfg(name))
    n = sum(p.numel() for p in codec.parameters())
    assert low < n < high, n  # demo: 12.36M (spectral ends), demo_conv: 5.74M
    assert (codec.sample_rate, codec.hop_length, codec.num_codebooks) == (16000, 640, 8)


def test_codec_package_imports_without_lightning_or_hydra():
    code = (
        "import sys, s2train.codec; "
        "bad = [m for m in ('pytorch_lightning', 'lightning', 'hydra', 'omegaconf', 'datasets') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
