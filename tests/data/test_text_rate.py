"""Items whose transcript does not fit their audio (text tokens per second) are skipped and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s2train.data.codes import CodesDataModule, CodesDataset
from s2train.text import S2Tokenizer
from tests.conftest import compose_config

TOK = Path(__file__).resolve().parents[2] / "checkpoints" / "demo" / "dualar" / "tokenizer"
SENTENCE = "The camera at the bakery belongs to my grandmother."


@pytest.fixture(scope="module")
def tok():
    if not S2Tokenizer.exists(TOK):
        pytest.skip("no shipped tokenizer")
    return S2Tokenizer.load(TOK)


def _row(i: int, text: str, frames: int) -> dict:
    return {"id": f"u{i}", "text": text, "speaker": "s", "codes": [[i % 7] * frames] * 2, "split": "train"}


def _bounds() -> dict:
    return dict(compose_config("train", ["recipe=pretrain"], Path("/tmp")).data.text_rate)


def test_text_rate_bounds_skip_and_count(tok):
    bounds = _bounds()
    assert bounds == {"min_tokens_per_s": 0.5, "max_tokens_per_s": 40.0, "strict": False}
    rows = [
        _row(0, SENTENCE, 75),  # 3 s at 25 frames/s: a normal read
        _row(1, " ".join([SENTENCE] * 100), 47),  # the 5000 characters on a 2 s clip
        _row(2, "Hi.", 2500),  # 100 s of audio for one word
    ]
    ds = CodesDataset(rows, tok, 2, max_tokens=100_000, frame_rate=25.0, text_rate=bounds)
    assert [it["id"] for it in ds.items] == ["u0"]
    assert ds.skipped.text_rate == 2 and ds.skipped.total == 2
    assert any("text tokens/s outside" in e for e in ds.skipped.examples)
    with pytest.raises(ValueError, match="strict=true"):
        CodesDataset(rows, tok, 2, max_tokens=100_000, frame_rate=25.0, text_rate={**bounds, "strict": True})
    off = CodesDataset(rows, tok, 2, max_tokens=100_000, frame_rate=None, text_rate=bounds)
    assert len(off) == 3  # no frame rate: the check is off


def test_datamodule_reads_frame_rate_from_summary(tok, tmp_path):
    from datasets import Dataset

    rows = [_row(i, SENTENCE, 75) for i in range(4)] + [_row(9, " ".join([SENTENCE] * 100), 47)]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "codes"))
    (tmp_path / "codes" / "summary.json").write_text(json.dumps({"frame_rate": 25.0, "codec": "/c"}))
    dm = CodesDataModule(
        str(tmp_path / "codes"), str(TOK), batch_size=2, num_semantic=tok.num_semantic, text_rate=_bounds()
    )
    dm.setup("fit")
    assert len(dm.train_set) == 4 and dm.train_set.skipped.text_rate == 1 and dm.codec_dir == "/c"
