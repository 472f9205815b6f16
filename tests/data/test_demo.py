"""The embedded demo corpus: contents, determinism, resumability, real tag effects; the text source."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s2train.data import demo
from s2train.data.demo import HELDOUT_SPEAKER, TAG_FAMILIES, build_demo_corpus
from s2train.data.manifest import load_items, read_manifest
from s2train.data.text_source import SentenceGenerator, split_tagged, strip_tags


@pytest.fixture(scope="module")
def items(tiny_corpus):
    return read_manifest(tiny_corpus)


def test_speakers_kinds_and_languages(items):
    voices = {it.speaker for it in items if not it.speaker.startswith("dialog:")}
    assert len(voices) >= 8
    kinds = defaultdict(list)
    for it in items:
        kinds[it.extra["kind"]].append(it)
    assert set(kinds) == {"plain", "tag", "dialog", "foreign"}
    assert {it.language for it in kinds["foreign"]} == {"es", "de", "fr", "cmn"}
    assert all(any(ord(c) > 127 for c in it.text) for it in kinds["foreign"])
    for it in kinds["dialog"]:
        a, b = it.speaker.removeprefix("dialog:").split("+")
        assert a != b and {a, b} <= voices
        assert it.text.startswith("<|speaker:0|>") and " <|speaker:1|>" in it.text
    tagged = {fam for it in kinds["tag"] for fam in it.extra["tags"]}
    assert tagged == set(TAG_FAMILIES)
    for it in kinds["tag"]:
        spans = split_tagged(it.text)
        assert [s.family for s in spans if s.family] == it.extra["tags"]


def test_splits_by_sentence_and_heldout_speaker(items):
    held = [it for it in items if it.speaker == HELDOUT_SPEAKER]
    assert held and all(it.split == "heldout" for it in held)
    assert all(it.speaker == HELDOUT_SPEAKER for it in items if it.split == "heldout")
    assert not any(HELDOUT_SPEAKER in it.speaker for it in items if it.speaker.startswith("dialog:"))
    split_of = defaultdict(set)
    for it in items:
        if it.split != "heldout" and it.extra["kind"] in ("plain", "tag"):
            split_of[strip_tags(it.text)].add(it.split)
    assert all(len(s) == 1 for s in split_of.values())
    assert {it.split for it in items} >= {"train", "val", "test", "heldout"}


def test_wavs_are_16k_mono_pcm_and_durations_match(items):
    for it in items:
        info = sf.info(it.path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), it.id
        assert abs(info.frames / 16000 - it.duration) < 1e-3
        assert 0.5 < it.duration < 20


def test_hf_copy_matches_manifest(tiny_corpus, items):
    hf_items = load_items(Path(tiny_corpus).parent / "hf")
    assert [(h.id, h.path, h.text, h.split) for h in hf_items] == [
        (i.id, i.path, i.text, i.split) for i in items
    ]


def test_rebuild_is_byte_identical_and_resumable(tiny_corpus, tmp_path, caplog):
    other = tmp_path / "again"
    assert build_demo_corpus(other, size="tiny", seed=0).read_bytes() == Path(tiny_corpus).read_bytes()
    # second run in the same folder reuses every wav
    before = {p.name: p.stat().st_mtime_ns for p in (other / "wavs").iterdir()}
    with caplog.at_level("INFO", logger="s2train.data.demo"):
        build_demo_corpus(other, size="tiny", seed=0)
    assert "(0 rendered" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in (other / "wavs").iterdir()} == before


def test_cli_subset_and_other_seed(tmp_path, capsys, caplog):
    manifest = demo.main([f"out={tmp_path}", "size=tiny", "seed=3", "voices=slt,kal16"])
    assert str(tmp_path / "wavs") in capsys.readouterr().out
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert {r["speaker"] for r in rows} <= {"slt", "kal16", "dialog:slt+kal16", "dialog:kal16+slt"}
    # flite-only: no tag/foreign items (they need espeak-ng), and the log says so
    assert {r["kind"] for r in rows} == {"plain", "dialog"} and "skipping tag and foreign" in caplog.text
    assert all(not r["path"].startswith("/") for r in rows)  # relative to the corpus folder
    with pytest.raises(SystemExit, match="unknown argument"):
        demo.main(["outdir=x"])
    with pytest.raises(ValueError, match="unknown demo voice"):
        build_demo_corpus(tmp_path / "x", size="tiny", voices=["nobody"])


def test_missing_engines_name_the_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"apt-get install -y flite espeak-ng"):
        build_demo_corpus(tmp_path, size="tiny")


def _frames(x: np.ndarray, sr: int = 16000):
    """(normalized autocorrelation peak, f0 at the peak) per active 40 ms frame, lags for 70-400 Hz."""
    frame, thresh, out = int(0.04 * sr), 0.1 * np.abs(x).max(), []
    for s in range(0, len(x) - frame, frame):
        f = x[s : s + frame] - x[s : s + frame].mean()
        if np.abs(f).max() < thresh:
            continue
        ac = np.correlate(f, f, "full")[frame - 1 :]
        lag = sr // 400 + int(ac[sr // 400 : sr // 70].argmax())
        out.append((ac[lag] / ac[0], sr / lag))
    return np.array(out)


def _voicing(x: np.ndarray) -> float:
    return float((_frames(x)[:, 0] > 0.5).mean())


def _f0(x: np.ndarray) -> float:
    fr = _frames(x)
    return float(np.median(fr[fr[:, 0] > 0.5, 1]))


def test_tag_effects_are_real():
    voice = next(v for v in demo.VOICES if v.name == "espeak_us_m3")
    text = "We should carry the heavy basket to the station tomorrow."
    r = {fam: demo._synth(voice, text, fam) for fam in (None, "whisper", "loud", "soft", "fast", "slow",
                                                        "high_pitch", "low_pitch")}  # fmt: skip
    rms = {k: float(np.sqrt((v**2).mean())) for k, v in r.items()}
    assert len(r["fast"]) < 0.7 * len(r[None]) < 0.7 * 0.7 * len(r["slow"])
    assert rms["loud"] > 2 * rms[None] > 4 * rms["soft"]
    assert _voicing(r["whisper"]) < 0.1 < 0.4 < _voicing(r[None])
    f0 = {k: _f0(r[k]) for k in (None, "high_pitch", "low_pitch")}
    assert f0["high_pitch"] > 1.4 * f0[None] and f0[None] > 1.2 * f0["low_pitch"]


def test_sentence_generator():
    a, b = SentenceGenerator(0).unique(40), SentenceGenerator(0).unique(40)
    assert a == b != SentenceGenerator(1).unique(40)
    assert len(set(a)) == 40
    assert all(5 <= len(s.split()) <= 15 and s[0].isupper() and s[-1] in ".?" for s in a)
    assert not any("{" in s or "  " in s for s in a)


def test_split_tagged_and_strip():
    spans = split_tagged("I think [whispering] we should [speak quickly] go now [pause]")
    assert [(s.family, s.text) for s in spans] == [(None, "I think"), ("whisper", "we should"), ("fast", "go now"),
                                                   ("pause", "")]  # fmt: skip
    assert split_tagged("[odd tag] hello")[0].family is None
    assert strip_tags("<|speaker:0|>Hi [loud] there <|speaker:1|>yo") == "Hi there yo"
    canon = {f.canonical for f in TAG_FAMILIES.values()}
    assert {"[whisper]", "[loud]", "[soft]", "[fast]", "[slow]", "[high pitch]", "[low pitch]", "[pause]",
            "[emphasis]"} == canon  # fmt: skip
