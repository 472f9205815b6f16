import pytest
import torch

from s2train.ar import DualAR

# the tiny model and its token layout are the Dual-AR tests' (one definition, re-exported as fixtures here)
from tests.ar.conftest import NUM_SEM, SEM_START, VOCAB, tiny_cfg, tiny_model  # noqa: F401

STOP = 3


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
def stopping_model(tiny_cfg):  # noqa: F811 (the fixture imported above)
    """A tiny model whose <|im_end|> logit is large enough to win greedily now and then."""
    torch.manual_seed(1)
    m = DualAR(tiny_cfg).eval()
    with torch.no_grad():
        m.slow.tok_emb.weight[STOP] *= 6.0
    return m


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Single-threaded tiny models (see tests/conftest.py::one_thread)."""
