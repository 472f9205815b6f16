"""BucketBatchSampler determinism/sharding and AudioDataModule batches, crops and bad-item skipping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s2train.data.datamodule import AudioDataModule
from s2train.data.manifest import BadManifestError, ManifestItem, write_manifest
from s2train.data.sampler import BucketBatchSampler

SR = 16000


def test_sampler_is_deterministic_and_epoch_aware():
    lengths = list(np.random.default_rng(0).integers(1, 1000, size=103))
    a = BucketBatchSampler(lengths, 8, seed=5, bucket_size_multiplier=4)
    b = BucketBatchSampler(lengths, 8, seed=5, bucket_size_multiplier=4)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert sorted(i for batch in first for i in batch) == list(range(103))  # every index exactly once
    assert len(first) == len(a) == 13
    # batches group similar lengths: spread within batches far below the global spread
    spread = np.mean([np.ptp([lengths[i] for i in batch]) for batch in first])
    assert spread < 0.5 * np.ptp(lengths)
    assert list(BucketBatchSampler(lengths, 8, seed=6)) != list(BucketBatchSampler(lengths, 8, seed=5))


@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_shards_evenly_across_ranks(drop_last):
    lengths = list(range(50))
    shards = [list(BucketBatchSampler(lengths, 4, seed=0, drop_last=drop_last, num_replicas=3, rank=r))
              for r in range(3)]  # fmt: skip
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1  # DDP needs the same number of steps on every rank
    assert sizes.pop() == len(BucketBatchSampler(lengths, 4, drop_last=drop_last, num_replicas=3))
    seen = [i for s in shards for batch in s for i in batch]
    if drop_last:
        assert len(seen) == len(set(seen)) and all(len(b) == 4 for s in shards for b in s)
    else:
        assert set(seen) == set(range(50))  # padded by repeating, nothing lost
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler(lengths, 4, num_replicas=2, rank=2)


def test_sampler_lightning_hooks():
    from torch.utils.data import SequentialSampler

    s = BucketBatchSampler(list(range(10)), 2)
    assert s.sampler is s  # Lightning calls batch_sampler.sampler.set_epoch(epoch)
    # Lightning's DistributedSampler injection would call cls(sampler, batch_size=, drop_last=): refuse it
    with pytest.raises(TypeError, match="use_distributed_sampler=false"):
        BucketBatchSampler(SequentialSampler(range(10)), batch_size=2, drop_last=False)


@pytest.mark.parametrize("replicas", [1, 2])
def test_sampler_start_batch_skips_once(replicas):
    lengths = list(range(37))
    for rank in range(replicas):
        s = BucketBatchSampler(lengths, 4, seed=3, num_replicas=replicas, rank=rank)
        s.set_epoch(2)
        full = list(s)
        s.start_batch = 3
        assert list(s) == full[3:]  # same epoch order and shard, first 3 batches dropped
        assert s.start_batch == 0 and list(s) == full and len(s) == len(full)  # one-shot; len is the epoch
        s.set_epoch(3)
        assert list(s) != full


def _corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    items = []
    for i in range(10):
        seconds = 0.5 if i == 0 else 1.5  # item 0 is shorter than the crop: padded
        p = tmp_path / "wavs" / f"{i}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR, subtype="PCM_16")
        items.append(
            ManifestItem(f"u{i}", str(p), f"utterance {i}", "spk", split="val" if i >= 8 else "train")
        )
    sf.write(tmp_path / "wavs" / "zeros.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    (tmp_path / "wavs" / "bad.wav").write_bytes(b"RIFF nonsense")
    items += [
        ManifestItem("silent", str(tmp_path / "wavs" / "zeros.wav"), "hi", "spk"),
        ManifestItem("corrupt", str(tmp_path / "wavs" / "bad.wav"), "hi", "spk"),
        ManifestItem("gone", str(tmp_path / "wavs" / "gone.wav"), "hi", "spk"),
        ManifestItem("notext", str(tmp_path / "wavs" / "1.wav"), "", "spk"),
    ]
    return write_manifest(items, tmp_path / "manifest.jsonl")


def test_datamodule_batches_and_bad_item_skipping(tmp_path):
    dm = AudioDataModule(_corpus(tmp_path), crop_seconds=1.0, batch_size=3, seed=1)
    dm.setup("fit")
    assert dm.reports["train"].counts == {"corrupt": 1, "empty_text": 1, "missing": 1, "silent": 1}
    assert len(dm.train_items) == 8 and len(dm.val_items) == 2
    batches = list(dm.train_dataloader())
    assert len(batches) == 2 and all(
        b["wav"].shape == (3, 1, SR) and b["wav"].dtype == torch.float32 for b in batches
    )
    # the short item is zero-padded at the end
    padded = dm.train_dataloader().dataset[(0, 0)]
    assert (
        padded.shape == (1, SR)
        and padded[0, SR // 2 + 10 :].abs().max() == 0
        and padded[0, :100].abs().max() > 0
    )

    # random crops: same (seed, epoch) -> same batches; a new epoch -> different crops and order
    def epoch(e):
        loader = dm.train_dataloader()
        loader.batch_sampler.sampler.set_epoch(e)  # what Lightning calls
        return torch.cat([b["wav"] for b in loader])

    assert torch.equal(epoch(0), epoch(0)) and not torch.equal(epoch(0), epoch(1))
    ds = dm.train_dataloader().dataset
    assert not torch.equal(ds[(3, 0)], ds[(3, 1)])

    val = [b["wav"] for b in dm.val_dataloader()]
    assert [v.shape for v in val] == [(2, 1, SR)]
    assert torch.equal(val[0], torch.cat([b["wav"] for b in dm.val_dataloader()]))  # fixed crops


def test_datamodule_resumes_mid_epoch(tmp_path):
    dm = AudioDataModule(_corpus(tmp_path), crop_seconds=0.25, batch_size=2, seed=1, val_splits=())
    full = [b["wav"] for b in dm.train_dataloader()]
    assert len(full) == 4 and dm.state_dict() == {"epoch": 0, "batches_done": 0}  # no trainer attached
    dm.load_state_dict({"epoch": 0, "batches_done": 3})  # what Lightning restores from a checkpoint
    resumed = dm.train_dataloader()
    assert len(resumed) == 4  # Lightning counts the skipped batches as done
    rest = [b["wav"] for b in resumed]
    assert len(rest) == 1 and torch.equal(rest[0], full[3])
    assert len(list(resumed)) == 4  # only the first pass is shortened
    dm.load_state_dict({"epoch": 0, "batches_done": 4})  # saved on the epoch's last batch: start fresh
    assert len(list(dm.train_dataloader())) == 4


def test_datamodule_strict_and_empty_split_errors(tmp_path):
    manifest = _corpus(tmp_path)
    with pytest.raises(BadManifestError, match="gone"):
        AudioDataModule(manifest, strict=True).setup()
    with pytest.raises(ValueError, match="no usable items"):
        AudioDataModule(manifest, train_splits=("nosuch",)).setup()
    dm = AudioDataModule(manifest, max_items=3, val_splits=())
    dm.setup()
    assert len(dm.train_items) == 3 and dm.val_dataloader() == []


def test_datamodule_on_demo_corpus(tiny_corpus):
    dm = AudioDataModule(tiny_corpus, crop_seconds=0.5, batch_size=4)
    dm.setup()
    assert not dm.reports["train"].items
    assert {it.split for it in dm.train_items} == {"train"}
    assert next(iter(dm.train_dataloader()))["wav"].shape == (4, 1, 8000)


def test_config_targets_the_datamodule():
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "configs" / "data" / "audio_demo.yaml")
    assert cfg._target_ == "s2train.data.datamodule.AudioDataModule"
    assert OmegaConf.to_container(cfg)["manifest"] == "${paths.data_dir}/demo/manifest.jsonl"
    import inspect

    params = set(inspect.signature(AudioDataModule).parameters)
    assert set(cfg) - {"_target_"} <= params
