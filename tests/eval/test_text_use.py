"""The text-conditioning gap (s2train.eval.text_use) tells a model that reads its transcript from one that does
not: two tiny Dual-ARs trained on codes that spell the text vs codes that ignore it."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from s2train.ar import DualAR, preset
from s2train.ar.losses import selected_slow_logits
from s2train.data.codes import CodesDataset, collate_prompts
from s2train.eval.text_use import main, shuffled_texts, text_use
from s2train.text.tokenizer import S2Tokenizer

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree"]
NUM_SEM = 16


def _rows(n: int, spell: bool, seed: int) -> list[dict]:
    """Codebook 0 spells the words, 3 frames each (spell), or counts from a random start for a random length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.randrange(len(WORDS)) for _ in range(rng.randint(3, 6))]
        if spell:
            cb0 = [w * 2 for w in words for _ in range(3)]
        else:
            start = rng.randrange(NUM_SEM)
            cb0 = [(start + t) % NUM_SEM for t in range(rng.randint(9, 18))]  # length unrelated to the text
        codes = [cb0] + [[(c + k) % NUM_SEM for c in cb0] for k in range(1, 2)]
        rows.append(
            {"id": f"u{i}", "text": " ".join(WORDS[w] for w in words), "speaker": "s", "codes": codes}
        )
    return rows


def _train(rows: list[dict], tok: S2Tokenizer, steps: int = 200) -> DualAR:
    torch.manual_seed(0)
    cfg = preset(
        "tiny", vocab_size=tok.vocab_size, semantic_start=tok.semantic_start, num_semantic=NUM_SEM,
        num_codebooks=2, codebook_size=NUM_SEM, dropout=0.0,
    )  # fmt: skip
    model = DualAR(cfg)
    ds = CodesDataset(rows, tok, 2, ref_prob=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = random.Random(0)
    for _ in range(steps):
        b = collate_prompts([ds[g.randrange(len(ds))] for _ in range(16)], tok.pad_id)
        hidden = model(b["tokens"], b["codes"], b["audio_mask"], compute_logits=False).hidden
        logits, target = selected_slow_logits(hidden, b["tokens"], b["loss_mask"], model.slow.logits)
        loss = F.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def tok() -> S2Tokenizer:
    return S2Tokenizer.train([" ".join(WORDS)] * 4, vocab_size=300, num_semantic=NUM_SEM)


def test_shuffled_texts_is_a_seeded_derangement():
    texts = [f"t{i}" for i in range(9)]
    out = shuffled_texts(texts, seed=3)
    assert sorted(out) == sorted(texts) and all(a != b for a, b in zip(out, texts))
    assert out == shuffled_texts(texts, seed=3) != shuffled_texts(texts, seed=4)
    with pytest.raises(ValueError, match="distinct"):
        shuffled_texts(["same", "same"])


def test_gap_is_large_when_codes_spell_the_text_and_small_when_they_do_not(tok, one_thread):
    reads = text_use(_train(_rows(64, True, 0), tok), tok, _rows(24, True, 1))
    ignores = text_use(_train(_rows(64, False, 0), tok), tok, _rows(24, False, 1))
    assert reads.loss_right < 1.5 and reads.gap > 0.8, reads
    assert abs(ignores.gap) < 0.3 and ignores.gap < reads.gap / 5, ignores
    assert reads.acc_right > reads.acc_shuffled


def test_cli_reads_a_bundle_and_an_encoded_dataset(tmp_path, tok, capsys, one_thread):
    from datasets import Dataset

    from s2train.bundle import export_bundle

    model = _train(_rows(32, True, 0), tok, steps=20)
    export_bundle(model, None, tok, None, tmp_path / "bundle")
    rows = [dict(r, split="val") for r in _rows(10, True, 2)]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "codes"))
    res = main([f"model={tmp_path / 'bundle'}", f"codes={tmp_path / 'codes'}", "max_items=6"])
    assert torch.is_grad_enabled()  # the CLI leaves the process's autograd state alone
    assert res["items"] == 6 and res["gap"] == pytest.approx(res["loss_shuffled"] - res["loss_right"])
    assert "gap" in capsys.readouterr().out
    res = main([f"model={tmp_path / 'bundle'}", f"codes={tmp_path / 'codes'}", "max_items=6", "heads=1"])
    table = res["heads"]
    assert len(table) == model.config.n_layers and all(len(layer) == model.config.n_heads for layer in table)
    assert all(0.0 <= c["mass"] <= 1.0 and c["prior_loss"] > 0 for layer in table for c in layer)
    assert "layer 0:" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown argument"):
        main([f"model={tmp_path / 'bundle'}", f"codes={tmp_path / 'codes'}", "oops=1"])
    with pytest.raises(ValueError, match="no rows with split"):
        main([f"model={tmp_path / 'bundle'}", f"codes={tmp_path / 'codes'}", "split=test"])
