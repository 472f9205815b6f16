"""Suites end to end with the ground-truth generate_fn, tags with espeak-ng renderings, speed, compare."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from s2train.eval.asr import FasterWhisperASR
from s2train.eval.compare import compare_runs
from s2train.eval.evalset import demo_evalset
from s2train.eval.metrics.tags import tags_in_text
from s2train.eval.normalize import strip_markup
from s2train.eval.speaker import ResemblyzerEncoder
from s2train.eval.suite import Judges, evaluate_from_config, ground_truth_generate_fn, run_suite

from .conftest import FAMILY_FLAGS, espeak, needs_espeak

pytestmark = needs_espeak
FILES = [
    "metrics.json",
    "utterances.jsonl",
    "utterances.csv",
    "report.md",
    "wer_per_speaker.png",
    "sim_hist.png",
]


@pytest.fixture(scope="module")
def judges():
    return Judges(asr=FasterWhisperASR(cpu_threads=2), speaker=ResemblyzerEncoder())


def test_ground_truth_run_is_reproducible(espeak_corpus, judges, tmp_path, record_property):
    es = demo_evalset(espeak_corpus / "manifest.jsonl", ["test"])  # 2 clips keep the ASR cost to seconds
    a = run_suite(
        "quick", ground_truth_generate_fn, es, judges, tmp_path / "a", seeds=[0], log_to_wandb=False
    )
    b = run_suite(
        "quick", ground_truth_generate_fn, es, judges, tmp_path / "b", seeds=[0], log_to_wandb=False
    )
    for name in FILES:
        assert (tmp_path / "a" / name).is_file(), name
    assert len(list((tmp_path / "a" / "wavs" / "seed0").glob("*.wav"))) == 2
    metrics_a = {k: v for k, v in a.items() if k.startswith("eval/")}
    metrics_b = {k: v for k, v in b.items() if k.startswith("eval/")}
    assert metrics_a == metrics_b
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["eval/wer"] == a["eval/wer"] and saved["meta"]["seeds"] == [0]
    assert {"torch", "s2train"} <= set(saved["meta"]["versions"]) and saved["meta"]["hardware"]
    record_property("gt_wer", a["eval/wer"])
    record_property("gt_sim", a["eval/sim"])
    print(
        f"ground-truth ceiling: WER {a['eval/wer']:.3f} corpus {a['eval/wer_corpus']:.3f} SIM {a['eval/sim']:.3f}"
    )
    assert a["eval/wer"] < 0.3 and a["eval/sim"] > 0.7
    rows = [json.loads(line) for line in (tmp_path / "a" / "utterances.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all({"hyp", "wer", "sim", "wav"} <= set(r) for r in rows)
    with (tmp_path / "a" / "utterances.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2
    assert "| `eval/wer` |" in (tmp_path / "a" / "report.md").read_text()

    # A degraded "model" (silence) must score worse, and compare must mark the better run.
    def silence(items, seed):
        return [(w * 0.0, sr) for w, sr in ground_truth_generate_fn(items, seed)]

    c = run_suite("quick", silence, es, Judges(asr=judges.asr), tmp_path / "c", log_to_wandb=False)
    assert c["eval/wer"] == 1.0
    table = compare_runs([tmp_path / "a", tmp_path / "c"], tmp_path / "cmp")
    assert f"**{a['eval/wer']:.4f}**" in table and "| `eval/wer` |" in table
    assert (tmp_path / "cmp" / "compare.png").is_file() and (tmp_path / "cmp" / "compare.md").is_file()


def _espeak_generate(items, seed):
    """Renders each item with espeak-ng, realising its (first) tag; the 'model' follows every tag."""
    out = []
    for it in items:
        tags = tags_in_text(it.text)
        flags = FAMILY_FLAGS[tags[0].replace(" ", "_")][0] if tags else []
        out.append(espeak(strip_markup(it.text), flags))
    return out


def test_tags_suite_and_seeds(espeak_corpus, tmp_path, record_property):
    es = demo_evalset(espeak_corpus / "manifest.jsonl", ["tags"])
    for tag in ("loud", "fast", "high pitch"):  # more tagged prompts than the fixture corpus holds
        es.items.append(
            type(es.items[0])(id=f"x_{tag}", text=f"[{tag}] We can finish the report today.", group="tags")
        )
    seen = []

    def gen(items, seed):
        seen.append([it.variant for it in items])
        return _espeak_generate(items, seed)

    res = run_suite("tags", gen, es, Judges(), tmp_path / "t", seeds=[0, 1], log_to_wandb=False)
    assert seen[0].count("with_tag") == seen[0].count("without_tag") == 4
    fams = res["tag_families"]["families"]
    record_property("suite_tag_pass_rate", res["eval/tag_pass_rate"])
    assert set(fams) == {"whisper", "loud", "fast", "high_pitch"}
    assert res["eval/tag_pass_rate"] == 1.0 and res["eval/tag_pass_rate_std"] == 0.0
    assert (tmp_path / "t" / "tag_effects.png").is_file()

    # A model that ignores tags fails the check.
    res_bad = run_suite(
        "tags",
        lambda items, seed: _espeak_generate(
            [type(it)(id=it.id, text=strip_markup(it.text)) for it in items], seed
        ),
        es,
        Judges(),
        tmp_path / "bad",
        log_to_wandb=False,
    )
    assert res_bad["eval/tag_pass_rate"] == 0.0


def test_speed_suite_and_config_entry(espeak_corpus, tmp_path):
    res = run_suite(
        "speed",
        None,
        None,
        Judges(),
        tmp_path / "s",
        seeds=[0, 1],
        benchmark_fn=lambda: {"rtf": 0.5},
        log_to_wandb=False,
    )
    assert res["eval/rtf"] == 0.5 and res["eval/rtf_std"] == 0.0
    with pytest.raises(ValueError, match="unknown suite"):
        run_suite("nope", None, None, Judges(), tmp_path / "n")

    cfg = {
        "ckpt": None,
        "paths": {"output_dir": str(tmp_path / "cfg")},
        "eval": {
            "name": "quick",
            "seeds": [0],
            "evalset": {
                "kind": "demo",
                "path": str(espeak_corpus / "manifest.jsonl"),
                "subsets": ["heldout"],
            },
            "asr": None,
            "speaker": {"backend": "resemblyzer"},
        },
    }
    res = evaluate_from_config(cfg)
    assert (tmp_path / "cfg" / "quick" / "metrics.json").is_file()
    assert "eval/wer" not in res and math.isfinite(res["eval/sim"])
    out = evaluate_from_config(
        {
            "compare": [str(tmp_path / "cfg" / "quick"), str(tmp_path / "s")],
            "paths": {"output_dir": str(tmp_path / "cmp")},
        }
    )
    assert "eval/sim" in out["compare"]
    with pytest.raises(ValueError, match="no generator configured"):
        evaluate_from_config({**cfg, "ckpt": "some/bundle"})


def test_codec_suite_logs_to_offline_wandb(espeak_corpus, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from s2train.eval.suite import _audio_metric_fns

    monkeypatch.setenv("WANDB_MODE", "offline")
    es = demo_evalset(espeak_corpus / "manifest.jsonl", ["heldout"], max_items=1)  # mel distance is costly
    judges = Judges(audio_metrics=_audio_metric_fns(["mel_distance", "stft_distance", "si_sdr"]))

    def noisy(items, seed):  # a lossy "codec": the original plus noise
        return [
            (w + 0.01 * np.random.default_rng(seed).standard_normal(w.size).astype(np.float32), sr)
            for w, sr in ground_truth_generate_fn(items, seed)
        ]

    run = wandb.init(project="s2train-tests", dir=str(tmp_path), mode="offline")
    try:
        clean = run_suite("codec", ground_truth_generate_fn, es, judges, tmp_path / "clean")
        lossy = run_suite("codec", noisy, es, judges, tmp_path / "lossy")
        assert {"eval/si_sdr", "eval/utterances"} <= set(run.summary.keys())
    finally:
        wandb.finish()
    assert clean["eval/si_sdr"] > 40 and clean["eval/mel_distance"] < 1e-3
    assert lossy["eval/si_sdr"] < 30 and lossy["eval/mel_distance"] > clean["eval/mel_distance"]


def test_eval_configs_compose():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    config_dir = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        for name in ("quick", "full", "tags", "codec", "speed"):
            cfg = compose(config_name=f"suite/{name}").suite
            assert cfg.name == name
        full = compose(config_name="suite/full").suite
        assert list(full.seeds) == [0, 1, 2] and full.evalset.max_items is None and full.asr.beam_size == 1
        assert list(compose(config_name="suite/codec").suite.audio_metrics) == [
            "mel_distance",
            "stft_distance",
            "si_sdr",
        ]
