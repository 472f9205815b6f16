"""Tag features and taxonomy: espeak-ng ground truth must pass every family."""

from __future__ import annotations

import math

import numpy as np
import pytest

from s2train.eval.metrics.tags import (
    TagResult,
    load_taxonomy,
    tag_effect,
    tag_effects_for_text,
    tag_pass_rates,
    tag_span_fractions,
    tags_in_text,
)
from s2train.eval.tag_features import extract_features

from .conftest import SENTENCES, espeak, needs_espeak, render_pair

FAMILIES = ["whisper", "loud", "soft", "fast", "slow", "high_pitch", "low_pitch", "pause", "emphasis"]
SYNONYM_PROBES = {
    "whisper": ["[whispering]", "In a whisper"],
    "loud": ["[shouting]", "LOUDLY"],
    "soft": ["[quietly]", "in a soft voice"],
    "fast": ["[speak quickly]", "rapidly"],
    "slow": ["[speak slowly]", "unhurried"],
    "high_pitch": ["[high-pitched]", "high_pitch"],
    "low_pitch": ["[deep voice]", "low-pitched"],
    "pause": ["[long pause]", "beat"],
    "emphasis": ["[stressed]", "with emphasis"],
}


def test_taxonomy_resolves_synonyms():
    tax = load_taxonomy()
    assert set(FAMILIES) <= set(tax.families)
    for fam, probes in SYNONYM_PROBES.items():
        for probe in probes:
            assert tax.resolve(probe).name == fam, probe
    assert tax.resolve("[sarcastic]") is None


def test_taxonomy_covers_demo_tag_families():
    text_source = pytest.importorskip("s2train.data.text_source")
    tax = load_taxonomy()
    for fam in text_source.TAG_FAMILIES.values():
        for syn in fam.synonyms:
            resolved = tax.resolve(syn)
            assert resolved is not None and resolved.name == fam.name, (fam.name, syn)


def test_tags_in_text():
    assert tags_in_text("I think [whisper] we go [speak quickly] now") == ["whisper", "speak quickly"]
    assert tags_in_text("plain") == []


def test_unknown_tag_is_unscored():
    wav = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    res = tag_effect(wav, wav, 16000, "[sarcastic]")
    assert res.family == "unscored" and res.passed is None
    summary = tag_pass_rates([res])
    assert summary["n_unscored"] == 1 and summary["n_scored"] == 0


def test_silent_clip_features_do_not_raise():
    feats = extract_features(np.zeros(16000, np.float32), 16000)
    assert feats.speaking_rate == 0.0 and math.isnan(feats.f0_median_hz)


def test_synthetic_tone_features():
    sr = 16000
    t = np.arange(sr) / sr
    tone = 0.3 * np.sin(2 * np.pi * 150.0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    feats = extract_features(tone.astype(np.float32), sr)
    assert abs(feats.f0_median_hz - 150.0) < 3.0
    assert feats.voicing_fraction > 0.9
    quiet = extract_features((tone * 0.1).astype(np.float32), sr)
    assert feats.rms_db - quiet.rms_db == pytest.approx(20.0, abs=0.5)


@needs_espeak
def test_ground_truth_pass_rates_per_family(record_property):
    results: list[TagResult] = []
    for fam in FAMILIES:
        for text in SENTENCES:
            wav_with, wav_without, sr = render_pair(fam, text)
            results.append(tag_effect(wav_with, wav_without, sr, SYNONYM_PROBES[fam][0]))
            # The reverse pair must not pass: the check has to be able to fail.
            if fam in ("loud", "fast", "high_pitch", "whisper"):
                assert not tag_effect(wav_without, wav_with, sr, fam).passed, (fam, text)
    summary = tag_pass_rates(results)
    rates = {f: round(s["pass_rate"], 2) for f, s in summary["families"].items()}
    record_property("tag_pass_rates", rates)
    print("ground-truth tag pass rates:", rates)
    print("effects:", {f: round(s["effect_median"], 2) for f, s in summary["families"].items()})
    assert set(rates) == set(FAMILIES)
    for fam, rate in rates.items():
        assert rate >= 0.9, f"{fam}: ground-truth pass rate {rate}"


def test_tag_span_fractions():
    spans = tag_span_fractions("[whisper] ab cd [loud] efgh")
    assert [s[0] for s in spans] == ["whisper", "loud"]
    assert spans[0][1] == 0.0 and spans[-1][2] == 1.0
    assert spans[0][2] == pytest.approx(5 / 9)  # "ab cd" (5 chars) then "efgh" (4)
    assert tag_span_fractions("no tags") == []


@needs_espeak
def test_multi_tag_spans_are_measured_separately():
    first, second = "Oscar asked me", "to check the mirror on Friday."
    w1, sr = espeak(first, ["-v", "en-us+whisper"])
    w2, _ = espeak(second, ["-a", "200"])
    p1, _ = espeak(first)
    p2, _ = espeak(second)
    with_ = np.concatenate([w1, w2])
    without = np.concatenate([p1, p2])
    results = tag_effects_for_text(with_, without, sr, f"[whispering] {first} [shouting] {second}")
    assert [r.family for r in results] == ["whisper", "loud"]
    assert all(r.passed for r in results), results
    whole = tag_effect(with_, without, sr, "whisper")
    assert results[0].effect > whole.effect  # the span isolates the whispered words
