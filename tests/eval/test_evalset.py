"""Eval-set readers: demo manifest groups and Seed-TTS-eval meta lists."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from s2train.eval.evalset import demo_evalset, read_seedtts_meta, tag_pairs

from .conftest import needs_espeak


@needs_espeak
def test_demo_evalset_groups(espeak_corpus):
    es = demo_evalset(espeak_corpus / "manifest.jsonl")
    groups = {g: [it.id for it in es.subset(g)] for g in ("test", "heldout", "tags", "dialogue")}
    assert groups == {
        "test": ["utt1", "utt2"],
        "heldout": ["utt3", "utt4"],
        "tags": ["utt5"],
        "dialogue": ["utt6"],
    }
    first = es.subset("test")[0]
    # Voice prompt: another plain utterance of the same speaker, training split first.
    assert first.prompt_wav.endswith("utt0.wav") and first.target_wav.endswith("utt1.wav")
    assert es.subset("heldout")[0].prompt_wav.endswith("utt4.wav")
    pairs = tag_pairs(es)
    assert [(p.id, p.variant) for p in pairs] == [("utt5", "with_tag"), ("utt5__notag", "without_tag")]
    # The untagged ground truth is the plain rendering of the same text by the same speaker.
    assert pairs[1].target_wav.endswith("utt1.wav") and pairs[1].text.startswith("I think")
    small = demo_evalset(espeak_corpus / "manifest.jsonl", ["test", "heldout"], max_items=1, seed=3)
    assert (
        len(small) == 2
        and small.items == demo_evalset(espeak_corpus / "manifest.jsonl", ["test", "heldout"], 1, 3).items
    )
    with pytest.raises(ValueError, match="unknown subsets"):
        demo_evalset(espeak_corpus / "manifest.jsonl", ["nope"])


def test_seedtts_meta_counts_missing(tmp_path):
    (tmp_path / "prompt-wavs").mkdir()
    (tmp_path / "wavs").mkdir()
    sf.write(tmp_path / "prompt-wavs" / "p1.wav", np.zeros(1600, np.float32), 16000)
    sf.write(tmp_path / "wavs" / "u1.wav", np.zeros(1600, np.float32), 16000)
    (tmp_path / "meta.lst").write_text(
        "u1|Prompt one.|prompt-wavs/p1.wav|Say this first.\n"
        "u2|Prompt two.|prompt-wavs/missing.wav|Say this second.\n"
        "\n"
    )
    es = read_seedtts_meta(tmp_path / "meta.lst")
    assert len(es) == 1 and len(es.missing) == 1 and es.missing[0].endswith("missing.wav")
    item = es.items[0]
    assert (item.id, item.text, item.prompt_text) == ("u1", "Say this first.", "Prompt one.")
    assert item.target_wav.endswith("wavs/u1.wav") and item.group == "seedtts"
    (tmp_path / "bad.lst").write_text("only|three|fields\n")
    with pytest.raises(ValueError, match="bad.lst:1"):
        read_seedtts_meta(tmp_path / "bad.lst")
