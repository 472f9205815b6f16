import pytest
import torch

from s2train.ar import DualAR, preset

VOCAB, SEM_START, NUM_SEM, STOP = 120, 40, 64, 3


def make_prompt(n: int, seed: int, k: int = 4, system_end: int | None = None):
    """A prompt in the token layout: text, some audio frames, optional <|im_end|> (STOP) closing a 'system turn'."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, NUM_SEM, (k, n), generator=g)
    audio = torch.zeros(n, dtype=torch.bool)
    audio[2 : max(3, n // 2)] = True
    tokens = torch.randint(4, SEM_START, (n,), generator=g)
    tokens = torch.where(audio, SEM_START + codes[0], tokens)
    if system_end is not None:
        audio[system_end] = False
        tokens[system_end] = STOP
    return tokens, codes, audio


@pytest.fixture
def tiny_cfg():
    return preset("tiny", vocab_size=VOCAB, semantic_start=SEM_START, num_semantic=NUM_SEM)


@pytest.fixture
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return DualAR(tiny_cfg).eval()


@pytest.fixture
def stopping_model(tiny_cfg):
    """A tiny model whose <|im_end|> logit is large enough to win greedily now and then."""
    torch.manual_seed(1)
    m = DualAR(tiny_cfg).eval()
    with torch.no_grad():
        m.slow.tok_emb.weight[STOP] *= 6.0
    return m


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Single-threaded tiny models (see tests/conftest.py::one_thread)."""
