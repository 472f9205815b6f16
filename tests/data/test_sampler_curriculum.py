"""Duration curriculum of BucketBatchSampler / CodesDataModule: the first N batches sorted by length, shortest
first; then bucketed and shuffled as without it; reproducible, rank-sharded, resumable mid-epoch."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from s2train.data.codes import CodesDataModule, write_synthetic_codes
from s2train.data.sampler import BucketBatchSampler

LENGTHS = [int(x) for x in np.random.default_rng(0).integers(1, 1000, size=103)]


def _flat_lengths(batches):
    return [LENGTHS[i] for b in batches for i in b]


def _is_ascending(xs) -> bool:
    return all(a <= b for a, b in zip(xs, xs[1:]))


def test_first_batches_are_the_shortest_items_in_ascending_order_then_shuffled():
    s = BucketBatchSampler(LENGTHS, 4, seed=1, bucket_size_multiplier=4, curriculum_batches=10)
    batches = list(s)
    plain = BucketBatchSampler(LENGTHS, 4, seed=1, bucket_size_multiplier=4)
    assert len(batches) == len(s) == len(plain) == 26
    assert sorted(i for b in batches for i in b) == list(range(103))  # still every item once per epoch
    head = _flat_lengths(batches[:10])
    assert _is_ascending(head) and head == sorted(LENGTHS)[:40]  # the 40 shortest, shortest first
    # after the curriculum: bucketed (batches group similar lengths) and shuffled (batch order not sorted)
    firsts = [LENGTHS[b[0]] for b in batches[10:]]
    assert not _is_ascending(firsts) and not _is_ascending(firsts[::-1])
    assert min(firsts) >= max(head)
    spread = np.mean([np.ptp([LENGTHS[i] for i in b]) for b in batches[10:]])
    assert spread < 0.5 * np.ptp(LENGTHS)
    # reproducible from (seed, epoch); off = today's order, bit for bit
    again = BucketBatchSampler(LENGTHS, 4, seed=1, bucket_size_multiplier=4, curriculum_batches=10)
    assert list(again) == batches
    assert list(
        BucketBatchSampler(LENGTHS, 4, seed=1, bucket_size_multiplier=4, curriculum_batches=0)
    ) == list(plain)
    with pytest.raises(ValueError, match="curriculum_batches"):
        BucketBatchSampler(LENGTHS, 4, curriculum_batches=-1)


def test_a_curriculum_longer_than_an_epoch_continues_in_the_next_and_then_stops():
    kw = dict(seed=2, bucket_size_multiplier=4)
    n = len(BucketBatchSampler(LENGTHS, 4, **kw))  # 26
    s = BucketBatchSampler(LENGTHS, 4, curriculum_batches=n + 5, **kw)
    epoch0 = list(s)
    assert _is_ascending(_flat_lengths(epoch0))  # the whole epoch sorted, the last batch short
    assert [len(b) for b in epoch0] == [4] * 25 + [3]
    s.set_epoch(1)
    epoch1 = list(s)
    assert s.curriculum_in_epoch(1) == 5  # the sweep restarts from the shortest items for 5 more batches
    assert _flat_lengths(epoch1[:5]) == sorted(LENGTHS)[:20]
    assert not _is_ascending([LENGTHS[b[0]] for b in epoch1[5:]])  # then shuffled
    assert sorted(i for b in epoch1 for i in b) == list(range(103))
    s.set_epoch(2)
    plain = BucketBatchSampler(LENGTHS, 4, **kw)
    plain.set_epoch(2)
    assert s.curriculum_in_epoch() == 0 and list(s) == list(plain)  # over: exactly as without a curriculum
    # drop_last: the short batch of a fully sorted epoch is dropped like any other
    d = BucketBatchSampler(LENGTHS, 4, curriculum_batches=10 * n, drop_last=True, **kw)
    assert len(list(d)) == len(d) == 25 and all(len(b) == 4 for b in d)


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_are_disjoint_and_each_global_step_continues_the_sorted_order(drop_last):
    replicas, steps = 3, 4
    shards = [
        list(BucketBatchSampler(LENGTHS, 4, seed=0, drop_last=drop_last, num_replicas=replicas, rank=r,
                                curriculum_batches=steps))
        for r in range(replicas)
    ]  # fmt: skip
    assert len({len(s) for s in shards}) == 1  # DDP: the same number of steps on every rank
    # global step t trains batch t of every rank: together they continue the shortest-first sweep
    by_step = [shards[r][t] for t in range(steps) for r in range(replicas)]
    assert _flat_lengths(by_step) == sorted(LENGTHS)[: steps * replicas * 4]
    for s in shards:
        assert _is_ascending(_flat_lengths(s[:steps]))
    seen = [i for s in shards for b in s for i in b]
    if drop_last:
        assert len(seen) == len(set(seen))  # disjoint
    else:
        assert set(seen) == set(range(103))
        head = [i for s in shards for b in s[:steps] for i in b]
        assert len(head) == len(set(head))  # the sorted batches are disjoint across ranks


@pytest.mark.parametrize("replicas", [1, 2])
def test_resume_skips_into_the_curriculum_exactly(replicas):
    for rank in range(replicas):
        s = BucketBatchSampler(LENGTHS, 4, seed=3, num_replicas=replicas, rank=rank, curriculum_batches=6)
        full = list(s)
        for k in (2, 6, 9):  # inside the curriculum, at its end, after it
            s.start_batch = k
            assert list(s) == full[k:]


@pytest.fixture(scope="module")
def codes_dir(tmp_path_factory):
    return write_synthetic_codes(tmp_path_factory.mktemp("codes") / "ds", num_items=24, num_codebooks=4)


class _Trainer:
    """What the data module reads from a Lightning trainer."""

    world_size, global_rank, current_epoch = 1, 0, 0

    def __init__(self, accumulate_grad_batches: int = 1):
        self.accumulate_grad_batches = accumulate_grad_batches


def test_datamodule_curriculum_steps_counts_optimizer_steps_logs_once_and_resumes(
    codes_dir, tmp_path, caplog
):
    kw = dict(batch_size=2, num_semantic=64, ref_prob=0.0, vocab_size=300)
    dm = CodesDataModule(str(codes_dir), str(tmp_path / "tok"), curriculum_steps=3, **kw)
    dm.setup()
    dm.trainer = _Trainer(accumulate_grad_batches=2)
    with caplog.at_level(logging.INFO, logger="s2train.data.codes"):
        loader = dm.train_dataloader()
        dm.train_dataloader()
    assert sum("curriculum: the first 3 optimizer steps (6 batches" in r.message for r in caplog.records) == 1
    full = [[i for i, _ in b] for b in loader.batch_sampler]
    lengths = dm.train_set.lengths
    head = [lengths[i] for b in full[:6] for i in b]
    assert _is_ascending(head) and head == sorted(lengths)[:12]
    assert not _is_ascending([lengths[i] for b in full for i in b])

    dm.load_state_dict({"epoch": 0, "batches_done": 4})  # a mid-epoch checkpoint inside the curriculum
    assert [[i for i, _ in b] for b in dm.train_dataloader().batch_sampler] == full[4:]
    with pytest.raises(ValueError, match="curriculum_steps"):
        CodesDataModule(str(codes_dir), str(tmp_path / "tok"), curriculum_steps=-1, **kw)
