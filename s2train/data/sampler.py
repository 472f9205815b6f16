"""Length-bucketed, seeded, epoch-aware, rank-sharded batch sampler (with an optional shortest-first curriculum),
and exact mid-epoch resume for data modules."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler

log = logging.getLogger(__name__)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length items, reproducible from ``(seed, epoch)`` and sharded across ranks.

    Each epoch: shuffle indices with ``Random(seed + epoch)``, cut them into windows of
    ``batch_size * bucket_size_multiplier`` items, sort each window by length (so a batch pads little),
    cut windows into batches, shuffle the batches, then give rank ``r`` batches ``r, r + R, ...``. Every
    rank gets the same number of batches (DDP would hang otherwise): the batch list is truncated
    (``drop_last``) or padded by repeating its first batches.

    ``start_batch`` (attribute, default 0) makes the next pass skip this rank's first ``start_batch``
    batches of the epoch, then resets to 0: a run resumed mid-epoch continues where it stopped.
    ``__len__`` keeps counting the whole epoch (Lightning counts the skipped batches as done).

    Curriculum (``curriculum_batches`` > 0): the first ``curriculum_batches`` batches of each rank, counted
    from the start of epoch 0 (epoch ``e`` starts at batch ``e * len(self)``), are the shortest items sorted
    by length, shortest first (ties in the seeded shuffled order); the rest of such an epoch (the remaining
    items) is bucketed and shuffled as above, so every epoch still covers each item once and has the same
    number of batches. In rank order the sorted batches go ``r, r + R, ...`` like all others: global step
    ``s`` trains sorted batches ``s * R .. s * R + R - 1``. A curriculum longer than an epoch repeats the
    short-to-long sweep in the next epoch.

    Args:
        lengths: one length per dataset index (any unit: frames, seconds, tokens).
        batch_size: items per batch.
        seed: base seed; the order depends only on ``(seed, epoch)``.
        shuffle: if False, batches follow index order sorted by length within windows, no shuffling.
        drop_last: drop the final short batch (and the batches that do not divide evenly across ranks).
        num_replicas: world size.
        rank: this process's rank in ``[0, num_replicas)``.
        bucket_size_multiplier: window size in batches; larger = tighter length grouping, less randomness.
        curriculum_batches: batches per rank, from the start of training, served sorted by length (0 = off).
    """

    def __init__(
        self,
        lengths: Sequence[float],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        bucket_size_multiplier: int = 50,
        curriculum_batches: int = 0,
    ):
        if isinstance(lengths, Sampler):
            # Lightning re-instantiates batch samplers as cls(sampler, batch_size=, drop_last=) when it
            # injects a DistributedSampler; that would silently turn indices into "lengths" here.
            raise TypeError(
                "BucketBatchSampler got a Sampler as `lengths`: it shards by rank itself, so set "
                "trainer.use_distributed_sampler=false (configs/trainer/ddp.yaml does) and pass num_replicas/rank"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, num_replicas={num_replicas})")
        if bucket_size_multiplier < 1:
            raise ValueError(f"bucket_size_multiplier must be >= 1, got {bucket_size_multiplier}")
        if curriculum_batches < 0:
            raise ValueError(f"curriculum_batches must be >= 0, got {curriculum_batches}")
        self.lengths = list(lengths)
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.bucket_size_multiplier = bucket_size_multiplier
        self.curriculum_batches = int(curriculum_batches)
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffle; Lightning calls this at the start of every epoch (via :attr:`sampler`)."""
        self.epoch = epoch

    @property
    def sampler(self) -> BucketBatchSampler:
        """Itself: Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler``, not on the batch sampler."""
        return self

    def curriculum_in_epoch(self, epoch: int | None = None) -> int:
        """Batches per rank of ``epoch`` (default: the current one) served sorted by length."""
        epoch = self.epoch if epoch is None else epoch
        return max(0, min(self.curriculum_batches - epoch * len(self), len(self)))

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        sorted_head: list[list[int]] = []
        head = self.curriculum_in_epoch() * self.num_replicas * self.batch_size
        if head:
            # the `head` shortest items (stable sort: ties in shuffled order), in batches, shortest first;
            # taken out of `order`, so the bucketed rest of the epoch holds every other item once
            by_length = sorted(order, key=lambda i: self.lengths[i])[:head]
            sorted_head = [
                by_length[i : i + self.batch_size] for i in range(0, len(by_length), self.batch_size)
            ]
            taken = set(by_length)
            order = [i for i in order if i not in taken]
        window = self.batch_size * self.bucket_size_multiplier
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            # stable sort: ties keep their shuffled order
            chunk = sorted(order[start : start + window], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
            sorted_head = [b for b in sorted_head if len(b) == self.batch_size]
        if self.shuffle:
            rng.shuffle(batches)
        # `head` is a multiple of the batch size, so the batch count matches __len__ (full batches taken
        # out of the windows change no rounding); only a head that takes every item ends in a short batch
        return sorted_head + batches

    def _num_per_rank(self, total: int) -> int:
        if self.drop_last:
            return total // self.num_replicas
        return math.ceil(total / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        # Not a generator: the one-shot skip is consumed when the iterator is created, not at its first batch.
        skip, self.start_batch = self.start_batch, 0
        batches = self._all_batches()
        n = self._num_per_rank(len(batches))
        needed = n * self.num_replicas
        if needed > len(batches) and batches:
            batches = batches + [batches[i % len(batches)] for i in range(needed - len(batches))]
        return iter(batches[:needed][self.rank :: self.num_replicas][skip:])

    def __len__(self) -> int:
        # batch count depends only on window sizes, not on the shuffle
        n, window = len(self.lengths), self.batch_size * self.bucket_size_multiplier
        sizes = [min(window, n - s) for s in range(0, n, window)]
        rnd = (lambda k: k // self.batch_size) if self.drop_last else (lambda k: -(-k // self.batch_size))
        return self._num_per_rank(sum(rnd(k) for k in sizes))


class EpochTaggedBatches:
    """Wraps a :class:`BucketBatchSampler` to yield ``[(index, epoch), ...]``: per-item randomness (crops,
    voice references) then depends on the epoch, also inside persistent DataLoader workers.

    Lightning calls ``set_epoch`` on ``batch_sampler.sampler``, so ``sampler`` points back at this object;
    ``set_epoch`` is forwarded to the wrapped sampler and to ``dataset`` when given (for plain-index access).
    It deliberately does not look like a torch ``BatchSampler`` (no ``batch_size``): under DDP with
    ``trainer.use_distributed_sampler=true`` Lightning then stops with a clear error instead of silently
    re-building it; set that flag to false, the wrapped sampler shards by rank itself.
    """

    def __init__(self, batches: BucketBatchSampler, dataset: Any = None):
        self.batches = batches
        self.dataset = dataset
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)
        if self.dataset is not None:
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.batches.epoch
        for batch in self.batches:
            yield [(i, epoch) for i in batch]

    def __len__(self) -> int:
        return len(self.batches)


class MidEpochResume:
    """Mixin for a ``LightningDataModule``: a run resumed from a mid-epoch checkpoint continues the epoch.

    Lightning saves a data module's ``state_dict`` in every checkpoint and restores it before building the
    loaders. The state is the epoch and the number of train batches this rank already trained in it; the
    subclass's ``train_dataloader`` calls :meth:`_resume_position` on its sampler so the first pass skips them
    (a plain DataLoader would replay the epoch from its first batch). Later passes are whole epochs.
    """

    _resume: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {"epoch": 0, "batches_done": 0}
        # `processed` already counts the batch whose on_train_batch_end writes the checkpoint
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": int(trainer.current_epoch), "batches_done": int(done)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = {
            "epoch": int(state_dict.get("epoch", 0)),
            "batches_done": int(state_dict.get("batches_done", 0)),
        }

    def _resume_position(self, sampler: BucketBatchSampler) -> None:
        """Set ``sampler.start_batch`` once after a restore (no-op otherwise)."""
        state, self._resume = self._resume, None
        if not state or state["batches_done"] <= 0:
            return
        trainer = getattr(self, "trainer", None)
        epoch = trainer.current_epoch if trainer is not None else state["epoch"]
        if state["batches_done"] >= len(sampler) or epoch != state["epoch"]:
            return  # saved at the end of an epoch: the next one starts at its first batch
        sampler.start_batch = state["batches_done"]
        log.info("resuming epoch %d at batch %d of %d", epoch, state["batches_done"], len(sampler))
