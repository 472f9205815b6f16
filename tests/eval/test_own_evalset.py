"""Eval on your own corpus: any layout with or without splits; compare labels columns by checkpoint."""

from __future__ import annotations

import json
import logging

import pytest

from s2train.data.manifest import write_manifest
from s2train.data.readers import assign_splits, load_items
from s2train.eval.compare import compare_runs
from s2train.eval.evalset import demo_evalset
from s2train.eval.suite import Judges, build_evalset, ground_truth_generate_fn, run_suite
from tests.data.own_data import make_ljspeech_folder


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    return make_ljspeech_folder(tmp_path_factory.mktemp("own"), n=5)


def test_folder_without_splits_scores_every_item_with_a_warning(own, caplog):
    with caplog.at_level(logging.WARNING):
        es = demo_evalset(own, ["test", "heldout"])
    assert len(es) == 5 and {it.group for it in es.items} == {"test"}
    assert "no test/heldout split" in caplog.text and "every item" in caplog.text
    assert all(it.prompt_wav and it.prompt_wav != it.target_wav for it in es.items)


def test_val_items_stand_in_for_test(own, tmp_path):
    items = assign_splits(load_items(own), val_fraction=0.4)
    write_manifest(items, tmp_path / "manifest.jsonl")
    es = build_evalset({"kind": "demo", "path": str(tmp_path / "manifest.jsonl"), "subsets": ["test"]})
    assert sorted(it.id for it in es.items) == sorted(it.id for it in items if it.split == "val")


def test_missing_evalset_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m s2train.data.demo"):
        build_evalset({"kind": "demo", "path": str(tmp_path / "nope" / "manifest.jsonl")})


def test_compare_takes_run_folders_and_labels_by_checkpoint(own, tmp_path):
    es = demo_evalset(own, ["test"], max_items=2)
    for run, weights in (("A", b"first"), ("B", b"second")):
        bundle = tmp_path / run / "checkpoints" / "export"
        bundle.mkdir(parents=True)
        (bundle / "model.safetensors").write_bytes(weights)
        run_suite("quick", ground_truth_generate_fn, es, Judges(), tmp_path / "runs" / run / "quick",
                  log_to_wandb=False, ckpt=bundle)  # fmt: skip
    meta = json.loads((tmp_path / "runs" / "A" / "quick" / "metrics.json").read_text())["meta"]
    assert meta["ckpt"] == str((tmp_path / "A" / "checkpoints" / "export").resolve())
    assert len(meta["ckpt_hash"]) == 10
    table = compare_runs([tmp_path / "runs" / "A", tmp_path / "runs" / "B"], tmp_path / "cmp")
    header = table.splitlines()[0]
    assert f"A/export@{meta['ckpt_hash']}" in header and "B/export@" in header
    assert "quick" not in header
    # the same weights elsewhere hash the same
    run_suite("quick", ground_truth_generate_fn, es, Judges(), tmp_path / "runs" / "C" / "quick",
              log_to_wandb=False, ckpt=tmp_path / "A" / "checkpoints" / "export")  # fmt: skip
    again = json.loads((tmp_path / "runs" / "C" / "quick" / "metrics.json").read_text())["meta"]
    assert again["ckpt_hash"] == meta["ckpt_hash"]


def test_stopped_at_cap_reaches_the_utterance_table(own, tmp_path):
    es = demo_evalset(own, ["test"], max_items=3)

    def generate(items, seed):
        return ground_truth_generate_fn(items, seed)

    generate.item_info = lambda: [{"stopped_at_cap": i == 0} for i in range(len(es))]
    res = run_suite("quick", generate, es, Judges(), tmp_path / "q", log_to_wandb=False)
    rows = [json.loads(line) for line in (tmp_path / "q" / "utterances.jsonl").read_text().splitlines()]
    assert [r["stopped_at_cap"] for r in rows] == [True, False, False]
    assert res["eval/stopped_at_cap_rate"] == pytest.approx(1 / 3)


def test_faster_whisper_per_clip_info_is_silenced(own, caplog):
    from s2train.eval.asr import FasterWhisperASR
    from s2train.eval.evalset import read_wav

    logging.getLogger("faster_whisper").setLevel(logging.NOTSET)
    asr = FasterWhisperASR(cpu_threads=1)
    with caplog.at_level(logging.INFO):
        wav, sr = read_wav(own / "wavs" / "own_000.wav")
        hyp = asr.transcribe([wav], sr)
    assert "mat" in hyp[0].lower()
    assert not [
        r for r in caplog.records if r.name.startswith("faster_whisper") and r.levelno < logging.WARNING
    ]
