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


def test_demo_is_a_few_million_params():
    codec = build_codec(codec_cfg("demo"))
    n = sum(p.numel() for p in codec.parameters())
    assert 1e6 < n < 10e6, n


def test_codec_package_imports_without_lightning_or_hydra():
    code = (
        "import sys, s2train.codec; "
        "bad = [m for m in ('pytorch_lightning', 'lightning', 'hydra', 'omegaconf', 'datasets') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
