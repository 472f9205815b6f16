import json

import pytest

from s2train.data.manifest import ManifestItem, write_manifest
from s2train.rl.prompts import PromptDataModule, prompts_from_manifest, read_prompts


def test_prompts_from_manifest_pairs_same_speaker_untagged_refs(tmp_path):
    items = [
        ManifestItem("a1", str(tmp_path / "a1.wav"), "hello there", "alice"),
        ManifestItem("a2", str(tmp_path / "a2.wav"), "[whisper] quiet now", "alice"),
        ManifestItem("a3", str(tmp_path / "a3.wav"), "plain words", "alice"),
        ManifestItem("b1", str(tmp_path / "b1.wav"), "lonely clip", "bob"),
        ManifestItem("d1", str(tmp_path / "d1.wav"), "two voices", "dialog:alice+bob"),
        ManifestItem("v1", str(tmp_path / "v1.wav"), "held out", "alice", split="val"),
    ]
    write_manifest(items, tmp_path / "m.jsonl")
    prompts = prompts_from_manifest(tmp_path / "m.jsonl", "train")
    assert [p["id"] for p in prompts] == ["a1", "a2", "a3"]
    for p in prompts:
        assert p["reference_path"] != str(tmp_path / f"{p['id']}.wav")
        assert "[" not in p["reference_text"]  # the whispered clip is never a reference
    assert prompts[1]["tags"] == ["whisper"]
    with pytest.raises(ValueError, match="no usable prompts"):
        prompts_from_manifest(tmp_path / "m.jsonl", "val")


def test_read_prompts_resolves_paths_and_checks_keys(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps({"text": "hi [laugh]", "reference_path": "r.wav"}) + "\n")
    rows = read_prompts(tmp_path / "p.jsonl")
    assert rows[0]["reference_path"] == str(tmp_path / "r.wav") and rows[0]["tags"] == ["laugh"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "hi"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1.*reference_path"):
        read_prompts(tmp_path / "bad.jsonl")


def test_datamodule_batches_are_lists_of_dicts(tmp_path):
    lines = [json.dumps({"text": f"t{i}", "reference_path": "r.wav"}) for i in range(5)]
    (tmp_path / "p.jsonl").write_text("\n".join(lines))
    dm = PromptDataModule(prompts=str(tmp_path / "p.jsonl"), batch_size=2, shuffle=False)
    batches = list(dm.train_dataloader())
    assert [len(b) for b in batches] == [2, 2, 1] and batches[0][1]["text"] == "t1"
    with pytest.raises(ValueError, match="exactly one"):
        PromptDataModule(manifest="m", prompts="p")
