"""`python -m s2train.data.encode` reads every layout `load_items` reads and holds out val/test splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s2train.data.manifest import ManifestItem, read_manifest
from s2train.data.readers import assign_splits
from tests.data.own_data import make_fish_folder, make_ljspeech_folder

ROOT = Path(__file__).resolve().parents[2]
CODEC = ROOT / "checkpoints" / "demo" / "codec"


def _items(n: int) -> list[ManifestItem]:
    return [ManifestItem(id=f"u{i}", path=f"/x/{i}.wav", text="t", speaker="s") for i in range(n)]


def test_assign_splits_is_deterministic_and_sized():
    a = assign_splits(_items(40), val_fraction=0.1, test_fraction=0.05)
    b = assign_splits(list(reversed(_items(40))), val_fraction=0.1, test_fraction=0.05)
    split_a = {it.id: it.split for it in a}
    assert split_a == {it.id: it.split for it in b}  # by id, not by file order
    counts = {s: sum(v == s for v in split_a.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 34, "val": 4, "test": 2}
    assert {it.split for it in assign_splits(_items(3), val_fraction=0.01)} == {"train", "val"}  # >= 1


def test_assign_splits_keeps_existing_splits():
    items = _items(5)
    items[0].split = "val"
    assert [it.split for it in assign_splits(items, val_fraction=0.5)] == [it.split for it in items]
    with pytest.raises(ValueError):
        assign_splits(_items(2), val_fraction=0.5, test_fraction=0.5)


def test_encode_help(capsys):
    from s2train.data.encode import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "val_fraction" in capsys.readouterr().out


@pytest.mark.skipif(not (CODEC / "config.json").exists(), reason="no shipped codec")
def test_encode_ljspeech_and_fish_folders(tmp_path):
    from datasets import load_from_disk

    from s2train.data.encode import main

    lj = make_ljspeech_folder(tmp_path / "lj", n=6)
    summary = main([f"codec={CODEC}", f"manifest={lj}", f"out={tmp_path / 'codes'}", "val_fraction=0.2"])
    assert summary["encoded"] == 6 and summary["splits"] == {"train": 5, "val": 1}
    ds = load_from_disk(str(tmp_path / "codes"))
    assert sorted(set(ds["split"])) == ["train", "val"] and ds[0]["speaker"] == "lj"
    manifest = read_manifest(tmp_path / "codes" / "manifest.jsonl")
    assert {it.id: it.split for it in manifest} == dict(zip(ds["id"], ds["split"]))
    assert all(Path(it.path).is_file() for it in manifest)

    fish = make_fish_folder(lj, tmp_path / "fish")
    summary = main([f"codec={CODEC}", f"source={fish}", f"out={tmp_path / 'fish_codes'}", "batch_size=3"])
    assert summary["encoded"] == 6 and summary["splits"] == {"train": 6}
    saved = json.loads((tmp_path / "fish_codes" / "summary.json").read_text())
    assert saved["splits"] == {"train": 6}
