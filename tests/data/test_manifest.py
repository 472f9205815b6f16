"""Manifest round-trip and every local reader layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s2train.data.manifest import ManifestItem, load_items, read_manifest, write_manifest
from s2train.data.readers import detect_kind

SR = 16000


def _wav(path: Path, seconds: float = 0.3, freq: float = 300.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, subtype="PCM_16")
    return path


def test_manifest_roundtrip_relative_paths_and_bytes(tmp_path):
    corpus = tmp_path / "corpus"
    outside = _wav(tmp_path / "elsewhere" / "x.wav")
    items = [
        ManifestItem("a", str(_wav(corpus / "wavs" / "a.wav")), "Héllo [whisper] there", "s1", duration=0.123456789,
                     extra={"kind": "tag", "tags": ["whisper"]}),
        ManifestItem("b", str(outside), "<|speaker:0|>Hi <|speaker:1|>Yo", "dialog:s1+s2", "en", 1.0, "val"),
    ]  # fmt: skip
    path = write_manifest(items, corpus / "manifest.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["path"] == "wavs/a.wav"  # relative under the manifest folder
    assert rows[1]["path"] == str(outside.resolve())  # absolute outside it
    assert rows[0]["duration"] == 0.1235
    assert list(rows[0]) == sorted(rows[0])
    assert "Héllo" in path.read_text(encoding="utf-8")  # UTF-8, not \u escapes

    back = read_manifest(path)
    assert back[0].path == str((corpus / "wavs" / "a.wav").resolve())
    assert back[0].extra == {"kind": "tag", "tags": ["whisper"]}
    assert (back[1].split, back[1].speaker, back[1].text) == ("val", "dialog:s1+s2", items[1].text)
    # moving the corpus keeps it readable, and rewriting gives the same bytes
    moved = tmp_path / "moved"
    corpus.rename(moved)
    assert Path(read_manifest(moved / "manifest.jsonl")[0].path).is_file()
    before = (moved / "manifest.jsonl").read_bytes()
    write_manifest(read_manifest(moved / "manifest.jsonl"), moved / "manifest.jsonl")
    assert (moved / "manifest.jsonl").read_bytes() == before


def test_read_manifest_errors_name_the_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"id": "a", "path": "x.wav", "text": "t", "speaker": "s"}\n{"id": "b", "path": "y.wav"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2.*speaker"):
        read_manifest(p)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "nope.jsonl")


def test_fish_folder(tmp_path):
    root = tmp_path / "fish"
    for spk in ("alice", "bob"):
        for i in range(2):
            _wav(root / spk / f"utt{i}.wav")
            (root / spk / f"utt{i}.lab").write_text(f"{spk} says {i}\n", encoding="utf-8")
    _wav(root / "bob" / "nolab.wav")  # skipped: no transcript
    assert detect_kind(root) == "fish"
    items = load_items(root)
    assert [(it.speaker, it.text) for it in items] == [
        ("alice", "alice says 0"), ("alice", "alice says 1"), ("bob", "bob says 0"), ("bob", "bob says 1"),
    ]  # fmt: skip
    assert len({it.id for it in items}) == 4 and all(Path(it.path).is_file() for it in items)


def test_ljspeech_folder(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    for i in (1, 2):
        _wav(root / "wavs" / f"LJ001-000{i}.wav")
    (root / "metadata.csv").write_text(
        'LJ001-0001|Printing, in 1 sense|Printing, in one sense\nLJ001-0002|He said "no"|\n', encoding="utf-8"
    )
    assert detect_kind(root) == "ljspeech"
    items = load_items(root)
    assert [it.id for it in items] == ["LJ001-0001", "LJ001-0002"]
    assert items[0].text == "Printing, in one sense"  # normalized column preferred
    assert items[1].text == 'He said "no"'  # falls back to raw text; quotes kept (QUOTE_NONE)
    assert items[0].speaker == "LJSpeech-1.1" and Path(items[1].path).is_file()


def test_audiofolder(tmp_path):
    root = tmp_path / "af"
    _wav(root / "data" / "one.wav")
    _wav(root / "two.wav")
    (root / "metadata.csv").write_text(
        "file_name,transcription,speaker_id\ndata/one.wav,first one,7\ntwo.wav,second one,8\n",
        encoding="utf-8",
    )
    assert detect_kind(root) == "audiofolder"
    items = load_items(root)
    assert [(it.id, it.text, it.speaker) for it in items] == [
        ("data_one", "first one", "7"),
        ("two", "second one", "8"),
    ]
    assert all(Path(it.path).is_file() for it in items)


def test_saved_datasets_dataset_with_audio_bytes(tmp_path):
    from datasets import Audio, Dataset, DatasetDict

    wavs = [_wav(tmp_path / "src" / f"{i}.wav", freq=200 + 100 * i) for i in range(3)]
    ds = Dataset.from_dict(
        {"audio": [{"path": p.name, "bytes": p.read_bytes()} for p in wavs], "text": ["a b", "c d", "e f"],
         "speaker_id": ["x", "y", "x"]}
    ).cast_column("audio", Audio(decode=False))  # fmt: skip
    DatasetDict({"train": ds.select([0, 1]), "validation": ds.select([2])}).save_to_disk(
        str(tmp_path / "hfds")
    )
    assert detect_kind(tmp_path / "hfds") == "hf_disk"
    items = load_items(tmp_path / "hfds", audio_cache_dir=tmp_path / "cache")
    assert [(it.text, it.speaker, it.split) for it in items] == [("a b", "x", "train"), ("c d", "y", "train"),
                                                                 ("e f", "x", "validation")]  # fmt: skip
    for it, src in zip(items, wavs):
        assert Path(it.path).read_bytes() == src.read_bytes()


def test_hub_name_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="OFFLINE"):
        load_items("someone/some-dataset")
    with pytest.raises(FileNotFoundError):
        load_items("/no/such/folder")
