"""LightningDataModule of fixed-length waveform crops for codec training: batches ``{"wav": [B, 1, S]}``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from s2train.data.audio import DEFAULT_MIN_SECONDS, audio_info, load_audio
from s2train.data.manifest import BadItemReport, ManifestItem, validate_items
from s2train.data.readers import load_items
from s2train.data.sampler import BucketBatchSampler, EpochTaggedBatches, MidEpochResume

log = logging.getLogger(__name__)


class AudioCropDataset(Dataset):
    """Crops of ``crop_samples`` from each item; short clips are zero-padded at the end.

    Indexing with ``(index, epoch)`` gives a random crop seeded by ``(seed, epoch, index)``, the same in
    any worker; indexing with a plain ``index`` gives the fixed centre crop (validation).

    Args:
        items: validated items.
        sample_rate: output rate.
        crop_samples: crop length S.
        seed: base seed of the random crops.
    """

    def __init__(self, items: Sequence[ManifestItem], sample_rate: int, crop_samples: int, seed: int = 0):
        self.items = list(items)
        self.sample_rate, self.crop_samples, self.seed = sample_rate, crop_samples, seed

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, path: str, rng: np.random.Generator | None) -> torch.Tensor:
        frames, rate = audio_info(path)
        if rate == self.sample_rate and frames > self.crop_samples:
            # native rate: decode only the crop instead of the whole file
            span = frames - self.crop_samples
            start = int(rng.integers(0, span + 1)) if rng is not None else span // 2
            data, _ = sf.read(path, start=start, frames=self.crop_samples, dtype="float32", always_2d=True)
            return torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))[None]
        wav = load_audio(path, self.sample_rate, check=False)
        span = wav.shape[-1] - self.crop_samples
        if span > 0:
            start = int(rng.integers(0, span + 1)) if rng is not None else span // 2
            wav = wav[:, start : start + self.crop_samples]
        return wav

    def __getitem__(self, key: int | tuple[int, int]) -> torch.Tensor:
        """Returns wav: [1, S] float32."""
        if isinstance(key, tuple):
            index, epoch = key
            rng = np.random.default_rng([self.seed, epoch, index])
        else:
            index, rng = key, None
        wav = self._read(self.items[index].path, rng)
        if wav.shape[-1] < self.crop_samples:
            wav = torch.nn.functional.pad(wav, (0, self.crop_samples - wav.shape[-1]))
        return wav


def collate_wavs(batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stack equal-length crops: list of [1, S] -> ``{"wav": [B, 1, S]}``."""
    return {"wav": torch.stack(batch)}


class AudioDataModule(MidEpochResume, pl.LightningDataModule):
    """Random waveform crops for training, fixed centre crops for validation.

    Items are validated at :meth:`setup`: bad ones are skipped and counted (``strict=True`` raises one error
    listing them all); the reports are kept in ``self.reports``. A run resumed from a mid-epoch checkpoint
    continues the epoch where it stopped (:class:`~s2train.data.sampler.MidEpochResume`).

    Args:
        manifest: anything :func:`s2train.data.readers.load_items` reads (JSONL, corpus folder...).
        sample_rate: rate of the batches.
        crop_seconds: crop length; batches are ``{"wav": [B, 1, round(crop_seconds * sample_rate)]}``.
        batch_size: items per batch (per rank).
        num_workers: DataLoader workers.
        seed: seed of the shuffle and of the random crops.
        train_splits: manifest splits used for training.
        val_splits: manifest splits used for validation (empty: no val loader).
        strict: fail on any bad item instead of skipping it.
        max_items: keep at most this many items per stage (first ones, before validation; for quick runs).
        min_seconds: shorter clips are rejected.
        max_seconds: longer clips are rejected (None: no limit).
    """

    def __init__(
        self,
        manifest: str | Path,
        sample_rate: int = 16000,
        crop_seconds: float = 1.0,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        train_splits: Sequence[str] = ("train",),
        val_splits: Sequence[str] = ("val",),
        strict: bool = False,
        max_items: int | None = None,
        min_seconds: float = DEFAULT_MIN_SECONDS,
        max_seconds: float | None = None,
    ):
        super().__init__()
        self.manifest = str(manifest)
        self.sample_rate, self.crop_samples = sample_rate, int(round(crop_seconds * sample_rate))
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train_splits, self.val_splits = tuple(train_splits), tuple(val_splits)
        self.strict, self.max_items = strict, max_items
        self.min_seconds, self.max_seconds = min_seconds, max_seconds
        self.train_items: list[ManifestItem] | None = None
        self.val_items: list[ManifestItem] = []
        self.reports: dict[str, BadItemReport] = {}

    def _select(self, items: list[ManifestItem], splits: tuple[str, ...], stage: str) -> list[ManifestItem]:
        chosen = [it for it in items if it.split in splits]
        if self.max_items is not None:
            chosen = chosen[: self.max_items]
        good, report = validate_items(
            chosen,
            self.sample_rate,
            strict=self.strict,
            min_seconds=self.min_seconds,
            max_seconds=self.max_seconds,
        )
        self.reports[stage] = report
        log.info("%s: %s (%s splits %s)", stage, report.summary(), self.manifest, list(splits))
        return good

    def setup(self, stage: str | None = None) -> None:
        """Read and validate the manifest once (idempotent)."""
        if self.train_items is not None:
            return
        items = load_items(self.manifest)
        self.train_items = self._select(items, self.train_splits, "train")
        if not self.train_items:
            raise ValueError(
                f"{self.manifest}: no usable items in splits {list(self.train_splits)} "
                f"({self.reports['train'].summary()}; splits present: {sorted({it.split for it in items})})"
            )
        self.val_items = self._select(items, self.val_splits, "val") if self.val_splits else []

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        world, rank = self._rank()
        # crops all have the same length, so lengths only matter for sharding: use a plain seeded shuffle
        sampler = BucketBatchSampler(
            [1] * len(self.train_items), self.batch_size, seed=self.seed, shuffle=True,
            drop_last=len(self.train_items) >= self.batch_size * world, num_replicas=world, rank=rank,
        )  # fmt: skip
        self._resume_position(sampler)
        return DataLoader(
            AudioCropDataset(self.train_items, self.sample_rate, self.crop_samples, self.seed),
            batch_sampler=EpochTaggedBatches(sampler),
            num_workers=self.num_workers,
            collate_fn=collate_wavs,
            persistent_workers=self.num_workers > 0,
            # own generator: creating the iterator would otherwise draw from the global torch RNG, at another
            # point of the stream in a resumed run
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if not self.val_items:
            return []
        return DataLoader(
            AudioCropDataset(self.val_items, self.sample_rate, self.crop_samples, self.seed),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_wavs,
        )
