"""Shared fixtures for the codec tests: the tiny config and a tiny random codec."""

from pathlib import Path

import pytest
import torch
import yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "codec"


def codec_cfg(name: str) -> dict:
    """The plain mapping in ``configs/codec/<name>.yaml``."""
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


@pytest.fixture
def tiny_cfg() -> dict:
    return codec_cfg("tiny")


@pytest.fixture
def tiny_codec(tiny_cfg):
    from s2train.codec import build_codec

    torch.manual_seed(0)
    return build_codec(tiny_cfg).eval()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Single-threaded tiny models (see tests/conftest.py::one_thread)."""
