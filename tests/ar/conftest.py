import pytest
import torch

from s2train.ar import DualAR, preset

VOCAB, SEM_START, NUM_SEM = 120, 40, 64


@pytest.fixture
def tiny_cfg():
    return preset("tiny", vocab_size=VOCAB, semantic_start=SEM_START, num_semantic=NUM_SEM)


@pytest.fixture
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return DualAR(tiny_cfg).eval()


def _random_batch(cfg, b=2, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, cfg.num_semantic, (b, cfg.num_codebooks, n), generator=g)
    audio = torch.rand(b, n, generator=g) > 0.5
    tokens = torch.randint(0, cfg.semantic_start, (b, n), generator=g)
    tokens = torch.where(audio, cfg.semantic_start + codes[:, 0], tokens)
    return tokens, codes, audio


@pytest.fixture
def random_batch():
    """(cfg, b, n, seed) -> tokens [B, L], codes [B, K, L], audio_mask [B, L] consistent with the layout."""
    return _random_batch


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Single-threaded tiny models (see tests/conftest.py::one_thread)."""
