"""Length-bucketed, seeded, epoch-aware, rank-sharded batch sampler."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length items, reproducible from ``(seed, epoch)`` and sharded across ranks.

    Each epoch: shuffle indices with ``Random(seed + epoch)``, cut them into windows of
    ``batch_size * bucket_size_multiplier`` items, sort each window by length (so a batch pads little),
    cut windows into batches, shuffle the batches, then give rank ``r`` batches ``r, r + R, ...``. Every
    rank gets the same number of batches (DDP would hang otherwise): the batch list is truncated
    (``drop_last``) or padded by repeating its first batches.

    Args:
        lengths: one length per dataset index (any unit: frames, seconds, tokens).
        batch_size: items per batch.
        seed: base seed; the order depends only on ``(seed, epoch)``.
        shuffle: if False, batches follow index order sorted by length within windows, no shuffling.
        drop_last: drop the final short batch (and the batches that do not divide evenly across ranks).
        num_replicas: world size.
        rank: this process's rank in ``[0, num_replicas)``.
        bucket_size_multiplier: window size in batches; larger = tighter length grouping, less randomness.
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
        self.lengths = list(lengths)
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.bucket_size_multiplier = bucket_size_multiplier
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffle; Lightning calls this at the start of every epoch (via :attr:`sampler`)."""
        self.epoch = epoch

    @property
    def sampler(self) -> BucketBatchSampler:
        """Itself: Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler``, not on the batch sampler."""
        return self

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        window = self.batch_size * self.bucket_size_multiplier
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            # stable sort: ties keep their shuffled order
            chunk = sorted(order[start : start + window], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def _num_per_rank(self, total: int) -> int:
        if self.drop_last:
            return total // self.num_replicas
        return math.ceil(total / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        n = self._num_per_rank(len(batches))
        needed = n * self.num_replicas
        if needed > len(batches) and batches:
            batches = batches + [batches[i % len(batches)] for i in range(needed - len(batches))]
        yield from batches[:needed][self.rank :: self.num_replicas]

    def __len__(self) -> int:
        # batch count depends only on window sizes, not on the shuffle
        n, window = len(self.lengths), self.batch_size * self.bucket_size_multiplier
        sizes = [min(window, n - s) for s in range(0, n, window)]
        rnd = (lambda k: k // self.batch_size) if self.drop_last else (lambda k: -(-k // self.batch_size))
        return self._num_per_rank(sum(rnd(k) for k in sizes))
