"""Code extraction: batched Lightning predict loop -> datasets dataset, bad files skipped, resumable."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from s2train.codec import save_codec
from s2train.data.manifest import ManifestItem, write_manifest

datasets = pytest.importorskip("datasets")


@pytest.fixture
def corpus(tmp_path, tiny_codec):
    rng = np.random.default_rng(0)
    items = []
    lengths = [1600, 2400, 800, 3000]
    for i, n in enumerate(lengths):
        t = np.arange(n) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t) + 0.05 * rng.standard_normal(n)
        path = tmp_path / f"u{i}.wav"
        sf.write(path, wav.astype(np.float32), 16000)
        items.append(
            ManifestItem(f"u{i}", str(path), f"text {i}", f"spk{i % 2}", split="val" if i == 3 else "train")
        )
    items.append(ManifestItem("broken", str(tmp_path / "missing.wav"), "gone", "spk0"))
    manifest = write_manifest(items, tmp_path / "manifest.jsonl")
    codec_dir = save_codec(tiny_codec, tmp_path / "codec")
    return manifest, codec_dir, items, lengths


def test_encode_manifest_writes_dataset(corpus, tmp_path, tiny_codec):
    from s2train.data.encode import encode_manifest

    manifest, codec_dir, items, lengths = corpus
    out = tmp_path / "codes"
    summary = encode_manifest(codec_dir, manifest, out, batch_size=2, shard_size=2)
    assert summary["encoded"] == 4 and summary["bad"] == 1 and summary["bad_reasons"] == {"missing": 1}
    ds = datasets.load_from_disk(str(out))
    assert set(ds.column_names) == {"id", "text", "speaker", "language", "split", "path", "codes"}
    assert ds["id"] == ["u0", "u1", "u2", "u3"]
    assert ds["split"] == ["train", "train", "train", "val"]
    for row, n, item in zip(ds, lengths, items):
        codes = torch.tensor(row["codes"])
        assert codes.shape == (4, math.ceil(n / 16))
        wav = torch.from_numpy(sf.read(item.path, dtype="float32")[0])[None, None]
        assert torch.equal(codes, tiny_codec.encode(wav)[0])  # batching/padding does not change codes
    assert json.loads((out / "summary.json").read_text())["encoded"] == 4


def test_encode_resumes_and_filters_splits(corpus, tmp_path, monkeypatch):
    from s2train.data import encode

    manifest, codec_dir, _, _ = corpus
    out = tmp_path / "codes"
    encode.encode_manifest(codec_dir, manifest, out, batch_size=4, shard_size=2)
    calls = []
    monkeypatch.setattr(encode.EncodeModule, "predict_step", lambda self, b, i: calls.append(i))
    summary = encode.encode_manifest(codec_dir, manifest, out, batch_size=4, shard_size=2)
    assert calls == [] and summary["encoded"] == 4  # every shard was already done
    monkeypatch.undo()

    val = encode.main([f"codec={codec_dir}", f"manifest={manifest}", f"out={tmp_path / 'val'}", "splits=val"])
    assert val["encoded"] == 1
    with pytest.raises(ValueError, match="no items"):
        encode.encode_manifest(codec_dir, manifest, tmp_path / "x", splits=["heldout"])
