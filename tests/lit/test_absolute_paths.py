"""A Dual-AR training checkpoint records absolute paths, so it loads from any working directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from s2train.lit.ar import DualARLitModule, _absolute

ROOT = Path(__file__).resolve().parents[2]
TOK = "checkpoints/demo/dualar/tokenizer"


def test_absolute_resolves_from_cwd_then_repo_root(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path)
    assert _absolute("here") == str(tmp_path / "here")
    assert _absolute(TOK) == str(ROOT / TOK)  # not under cwd: the repo root's
    assert _absolute("nowhere/at/all") == "nowhere/at/all" and _absolute(None) is None


def test_checkpoint_hparams_are_absolute_and_load_elsewhere(tmp_path, monkeypatch):
    if not (ROOT / TOK).is_dir():
        pytest.skip("no shipped tokenizer")
    monkeypatch.chdir(ROOT)
    from s2train.text import S2Tokenizer

    tok = S2Tokenizer.load(TOK)
    import yaml

    model = yaml.safe_load((ROOT / "configs" / "model" / "tiny.yaml").read_text())
    model |= {"codebook_size": tok.num_semantic, "max_seq_len": 64}
    module = DualARLitModule(model=model, tokenizer_dir=TOK)
    assert module.hparams.tokenizer_dir == str(ROOT / TOK)
    ckpt = tmp_path / "x.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": "2.6.0"}, ckpt)  # fmt: skip
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = DualARLitModule.load_from_checkpoint(str(ckpt), map_location="cpu")
    assert loaded.tokenizer.vocab_size == tok.vocab_size
