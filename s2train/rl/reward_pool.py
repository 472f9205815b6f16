"""Reward scoring off the training thread, with a waveform-keyed cache.

ASR and speaker-encoder scoring take as long as a rollout on small models; running them on a worker thread
lets the trainer compute reference/behaviour log-probs meanwhile (S2 scores rewards asynchronously with a
waveform cache). The cache key is a hash of the audio bytes plus the prompt fields a reward can read, so a
repeated waveform (identical completions in a group, re-scored batches) is scored once.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import Tensor

from s2train.rl.rewards import RewardResult, RewardStack, prompt_for_samples

log = logging.getLogger(__name__)


def _hash_tensor(h, x) -> None:
    if x is None:
        h.update(b"none")
        return
    t = torch.as_tensor(x).detach().cpu().contiguous()
    h.update(str((t.dtype, tuple(t.shape))).encode())
    h.update(t.numpy().tobytes())


def audio_key(wav: Tensor, sample_rate: int) -> str:
    """SHA-1 of the waveform's bytes, dtype, shape and sample rate."""
    h = hashlib.sha1()
    _hash_tensor(h, wav)
    h.update(str(int(sample_rate)).encode())
    return h.hexdigest()


def sample_key(sample: dict, item: dict) -> str:
    """Cache key of one (completion, prompt) pair: audio bytes, frame-level fields and prompt content."""
    h = hashlib.sha1(audio_key(sample["wav"], sample["sample_rate"]).encode())
    _hash_tensor(h, sample.get("codes"))
    h.update(repr((sample.get("num_frames"), bool(sample.get("hit_max_frames")))).encode())
    h.update(repr((item.get("text"), tuple(item.get("tags") or ()), item.get("language"))).encode())
    for name in ("reference_wav", "untagged_wav"):
        _hash_tensor(h, item.get(name))
    return h.hexdigest()


class RewardCache:
    """LRU cache ``(reward name, sample key) -> float``; thread-safe enough for one writer thread."""

    def __init__(self, max_size: int = 8192):
        self.max_size = int(max_size)
        self._data: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, name: str, key: str) -> float | None:
        val = self._data.get((name, key))
        if val is None:
            self.misses += 1
            return None
        self._data.move_to_end((name, key))
        self.hits += 1
        return val

    def put(self, name: str, key: str, value: float) -> None:
        self._data[(name, key)] = value
        self._data.move_to_end((name, key))
        while len(self._data) > self.max_size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class RewardPool:
    """Scores rollouts with a :class:`RewardStack` on a worker thread, consulting a :class:`RewardCache`.

    Args:
        stack: the reward stack.
        max_workers: worker threads; 1 keeps the ASR/speaker models single-threaded (they are not
            guaranteed thread-safe) while still overlapping with the training thread.
        cache_size: entries kept in the cache; 0 disables caching.
    """

    def __init__(self, stack: RewardStack, max_workers: int = 1, cache_size: int = 8192):
        self.stack = stack
        self.cache = RewardCache(cache_size) if cache_size > 0 else None
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="reward")

    def score(self, samples: list[dict], batch: list[dict]) -> RewardResult:
        """Score synchronously on the calling thread (cache included)."""
        if len(samples) % self.stack.group_size != 0:
            raise ValueError(f"{len(samples)} samples are not whole groups of {self.stack.group_size}")
        items = prompt_for_samples(samples, batch)
        if self.cache is None:
            return self.stack.combine({n: self.stack.score(n, samples, items) for n in self.stack.weights})
        keys = [sample_key(s, it) for s, it in zip(samples, items)]
        components = {}
        for name in self.stack.weights:
            vals = torch.full((len(samples),), float("nan"))
            todo = []
            for i, k in enumerate(keys):
                cached = self.cache.get(name, k)
                if cached is None:
                    todo.append(i)
                else:
                    vals[i] = cached
            if todo:
                fresh = self.stack.score(name, [samples[i] for i in todo], [items[i] for i in todo])
                for i, v in zip(todo, fresh.tolist()):
                    vals[i] = v
                    if v == v:  # never cache a failure: it may be transient
                        self.cache.put(name, keys[i], v)
            components[name] = vals
        return self.stack.combine(components)

    def submit(self, samples: list[dict], batch: list[dict]) -> Future[RewardResult]:
        """Score on the worker thread; ``.result()`` returns the :class:`RewardResult` (or re-raises)."""
        return self._executor.submit(self.score, samples, batch)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["RewardCache", "RewardPool", "audio_key", "sample_key"]
