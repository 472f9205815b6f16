"""Broken inputs end to end: data module, code extraction, codec and pretrain runs, eval-set reading.

Each bad item must be skipped with a counted warning and a summary, or (strict mode) rejected up front with
one error naming every culprit file. Nothing may crash mid-epoch. See docs/reliability.md for the table.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from s2train.data.datamodule import AudioDataModule
from s2train.data.manifest import BadManifestError, read_manifest
from tests.reliability.conftest import BAD_CASES, FAST_CODEC, NUM_GOOD, SR

datasets = pytest.importorskip("datasets")

BAD = {k: v for k, v in BAD_CASES.items() if v != "ok"}
ODD_BUT_OK = [k for k, v in BAD_CASES.items() if v == "ok"]


def test_datamodule_skips_and_counts_every_bad_item(bad_corpus, caplog):
    dm = AudioDataModule(str(bad_corpus), sample_rate=SR, crop_seconds=0.05, batch_size=4, seed=0)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    report = dm.reports["train"]
    rejected = {item.id: reason for item, reason, _ in report.items}
    assert rejected == BAD
    assert report.total == NUM_GOOD + len(BAD_CASES)
    assert report.counts == {r: list(BAD.values()).count(r) for r in set(BAD.values())}
    assert {it.id for it in dm.train_items} == {f"good{i}" for i in range(NUM_GOOD)} | set(ODD_BUT_OK)
    # one warning per skipped item (naming the file) plus the one-line summary
    text = caplog.text
    for name in BAD:
        assert f"skipping {name} (" in text, name
    assert f"{len(BAD)}/{report.total} items rejected" in text
    durations = {it.id: it.duration for it in dm.train_items}
    assert durations["ten_minutes"] == pytest.approx(600.0)
    assert durations["rate_8k"] == pytest.approx(0.5) and durations["rate_48k"] == pytest.approx(0.5)

    # a whole epoch over the survivors: fixed-shape, finite batches, the 10-minute file included
    seen = 0
    for batch in dm.train_dataloader():
        wav = batch["wav"]
        assert wav.shape[1:] == (1, int(0.05 * SR)) and torch.isfinite(wav).all()
        seen += wav.shape[0]
    assert seen == len(dm.train_items) // 4 * 4  # drop_last


def test_strict_mode_rejects_up_front_naming_every_file(bad_corpus):
    dm = AudioDataModule(str(bad_corpus), sample_rate=SR, crop_seconds=0.05, strict=True)
    with pytest.raises(BadManifestError) as err:
        dm.setup()
    msg = str(err.value)
    assert msg.startswith(f"{len(BAD)}/{NUM_GOOD + len(BAD_CASES)} items rejected")
    by_id = {it.id: it.path for it in read_manifest(bad_corpus)}
    for name, reason in BAD.items():
        assert f"{name} [{reason}] {by_id[name]}" in msg


def test_max_seconds_rejects_the_long_file(bad_corpus):
    dm = AudioDataModule(str(bad_corpus), sample_rate=SR, crop_seconds=0.05, max_seconds=30.0)
    dm.setup()
    assert dict((it.id, r) for it, r, _ in dm.reports["train"].items)["ten_minutes"] == "too_long"


def test_malformed_manifest_line_is_rejected_with_its_line_number(tmp_path, bad_corpus):
    lines = Path(bad_corpus).read_text().splitlines()
    lines.insert(3, '{"id": "x", "path": "a.wav"')  # truncated JSON
    bad = tmp_path / "manifest.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"manifest\.jsonl:4: bad manifest line"):
        read_manifest(bad)
    lines[3] = '{"id": "x", "path": "a.wav"}'  # required fields missing
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r":4: .*lacks required field\(s\) \['speaker', 'text'\]"):
        read_manifest(bad)


@pytest.fixture(scope="module")
def bad_codes(bad_corpus, tiny_codec_dir, tmp_path_factory) -> Path:
    """Codes extracted from the bad corpus (max_seconds=2 caps the 10-minute file), plus wrong-K rows."""
    from s2train.data.encode import encode_manifest

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bad_codes") / "codes"
    summary = encode_manifest(tiny_codec_dir, bad_corpus, out, batch_size=4, max_seconds=2.0)
    ds = datasets.load_from_disk(str(out))
    # Rows a buggy or foreign encoder could produce: K=3 codes, K=6 codes, codebook-0 ids past the range.
    extra = {c: [] for c in ds.column_names}
    for name, codes in [
        ("wrong_k3", [[1, 2, 3]] * 3),
        ("wrong_k6", [[1, 2, 3]] * 6),
        ("out_of_range", [[999, 2, 3]] + [[1, 2, 3]] * 3),
    ]:
        row = {**ds[0], "id": name, "codes": codes, "split": "train"}
        for c in ds.column_names:
            extra[c].append(row[c])
    merged = datasets.concatenate_datasets([ds, datasets.Dataset.from_dict(extra, features=ds.features)])
    final = out.parent / "codes_plus"
    merged.save_to_disk(str(final))
    (final / "summary.json").write_text(json.dumps(summary))
    return final


def test_encode_skips_bad_audio_and_counts_reasons(bad_codes):
    summary = json.loads((bad_codes / "summary.json").read_text())
    audio_bad = {k: v for k, v in BAD.items() if v != "empty_text"}
    assert summary["bad"] == len(audio_bad)
    assert summary["bad_reasons"] == {r: list(audio_bad.values()).count(r) for r in set(audio_bad.values())}
    ds = datasets.load_from_disk(str(bad_codes))
    rows = {r["id"]: r for r in ds}
    assert set(rows) >= {f"good{i}" for i in range(NUM_GOOD + 2)} | set(ODD_BUT_OK)
    assert len(rows["ten_minutes"]["codes"][0]) == math.ceil(2.0 * SR / 16)  # truncated to max_seconds
    assert len(rows["rate_48k"]["codes"][0]) == math.ceil(0.5 * SR / 16)  # resampled before encoding


def test_codes_datamodule_skips_wrong_k_empty_and_out_of_range(bad_codes, tmp_path, caplog):
    from s2train.data.codes import CodesDataModule

    dm = CodesDataModule(
        str(bad_codes), str(tmp_path / "tok"), batch_size=4, num_codebooks=4, num_semantic=64,
        vocab_size=300, max_tokens=1000,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        dm.setup()
    sk = dm.train_set.skipped
    # wrong K: the two injected rows; empty: the two blank transcripts; range: one; too long: the 2 s clip
    assert (sk.wrong_k, sk.empty, sk.out_of_range, sk.too_long) == (2, 2, 1, 1)
    assert "skipped 6 of" in caplog.text
    ids = {it["id"] for it in dm.train_set.items}
    assert {"arabic", "devanagari", "emoji", "unknown_tag", "stereo"} <= ids
    # unseen scripts survive the tokenizer round trip (byte fallback)
    for name in ("arabic", "devanagari", "emoji"):
        text = next(it["text"] for it in dm.train_set.items if it["id"] == name)
        assert dm.tokenizer.decode(dm.tokenizer.encode(text)) == text


def test_codec_recipe_runs_on_the_bad_corpus(compose_train, bad_corpus):
    from s2train.entry import train

    cfg = compose_train(
        "recipe=codec", *FAST_CODEC, f"data.manifest={bad_corpus}", "data.batch_size=2",
        "logger=none", "callbacks=none", "trainer.max_steps=3", "++trainer.limit_val_batches=1",
        "trainer.val_check_interval=2", "module.mel_warmup_steps=1",
    )  # fmt: skip
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and "train/loss_disc" in metrics
    assert math.isfinite(metrics["val/mel_distance"])


def test_pretrain_recipe_runs_on_extracted_bad_codes(compose_train, bad_codes, tmp_path):
    from s2train.entry import train

    cfg = compose_train(
        "recipe=pretrain", "model=tiny", "codec=tiny", f"data.dataset_dir={bad_codes}",
        f"data.tokenizer_dir={tmp_path / 'tok'}", "data.batch_size=4", "data.vocab_size=300",
        "data.max_tokens=1000", "logger=none", "callbacks=none", "trainer.max_steps=3",
        "++trainer.limit_val_batches=1", "trainer.val_check_interval=3", "module.warmup_steps=1",
    )  # fmt: skip
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/loss"])


def test_eval_readers_skip_missing_audio(bad_corpus, tmp_path, caplog):
    from s2train.eval.evalset import demo_evalset, read_seedtts_meta

    with caplog.at_level(logging.WARNING):
        es = demo_evalset(bad_corpus, subsets=("tags",))
    assert [it.id for it in es.items] == ["unknown_tag"]  # "[sarcastic robot]" parses as a tag
    assert any(p.endswith("missing.wav") for p in es.missing)
    assert "1 manifest files are missing" in caplog.text

    meta = tmp_path / "meta.lst"
    good = read_manifest(bad_corpus)[0].path
    meta.write_text(f"u1|hi there|{good}|say this\nu2|hi|nowhere.wav|say that\n\n")
    es = read_seedtts_meta(meta)
    assert [it.id for it in es.items] == ["u1"] and es.missing == [str(tmp_path / "nowhere.wav")]
    meta.write_text("u1|only two fields\n")
    with pytest.raises(ValueError, match=r"meta\.lst:1: expected utt\|prompt_text"):
        read_seedtts_meta(meta)
