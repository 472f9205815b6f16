"""Static KV caches sized to the request, and the LRU cache of voice (reference) prefixes."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor

from s2train.ar.config import DualARConfig


class KVCache:
    """Preallocated keys/values of one attention layer: k, v [B, H_kv, S, hd].

    `update` writes in place at the given slots, so buffer addresses never change (CUDA-graph safe).
    `row(b)` returns a view on row b sharing the storage.
    """

    def __init__(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v

    @classmethod
    def empty(cls, batch: int, heads: int, length: int, head_dim: int, dtype, device) -> KVCache:
        shape = (batch, heads, length, head_dim)
        return cls(
            torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device)
        )

    def update(self, slots: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v ([B, H, L, hd]) at `slots` ([L]) and return the whole buffers."""
        self.k.index_copy_(2, slots, k.to(self.k.dtype))
        self.v.index_copy_(2, slots, v.to(self.v.dtype))
        return self.k, self.v

    def row(self, b: int) -> KVCache:
        return KVCache(self.k[b : b + 1], self.v[b : b + 1])

    def tensors(self) -> list[Tensor]:
        return [self.k, self.v]


@dataclass
class DecodeCaches:
    """Slow caches [R, H, max_len, hd] per slow layer and fast caches [B, H, K+1, hd] per fast layer.

    R = B rows, or 2B with classifier-free guidance (the unconditional rows run the slow AR only).
    """

    slow: list[KVCache]
    fast: list[KVCache]
    max_len: int

    @classmethod
    def allocate(
        cls, cfg: DualARConfig, batch: int, max_len: int, dtype, device, slow_rows: int | None = None
    ) -> DecodeCaches:
        """Sized to the request (`max_len = longest prompt + max_frames + 1`), never to max_seq_len.

        `slow_rows`: rows of the slow caches (default `batch`; 2 * batch with guidance)."""
        slow = [
            KVCache.empty(slow_rows or batch, cfg.n_kv_heads, max_len, cfg.head_dim, dtype, device)
            for _ in range(cfg.n_layers)
        ]
        fast = [
            KVCache.empty(batch, cfg.fast_n_kv_heads, cfg.num_codebooks + 1, cfg.fast_head_dim, dtype, device)
            for _ in range(cfg.fast_n_layers)
        ]
        return cls(slow, fast, max_len)

    def row(self, b: int) -> list[KVCache]:
        return [c.row(b) for c in self.slow]

    def copy_row(self, src: int, dst_start: int, dst_end: int) -> None:
        """Prefix sharing: copy row `src`'s slow KV into rows [dst_start, dst_end)."""
        for c in self.slow:
            c.k[dst_start:dst_end].copy_(c.k[src : src + 1].expand(dst_end - dst_start, -1, -1, -1))
            c.v[dst_start:dst_end].copy_(c.v[src : src + 1].expand(dst_end - dst_start, -1, -1, -1))

    def tensors(self) -> list[Tensor]:
        return [t for c in self.slow + self.fast for t in c.tensors()]


def prefix_key(tokens: Tensor, codes: Tensor, audio_mask: Tensor) -> str:
    """Content key of a prompt prefix: its tokens plus its codes at audio positions.

    Args:
        tokens: [n]; codes: [K, n]; audio_mask: [n].
    """
    h = hashlib.sha1()
    h.update(tokens.detach().to("cpu", torch.int64).numpy().tobytes())
    h.update(audio_mask.detach().to("cpu", torch.bool).numpy().tobytes())
    h.update(codes.detach().masked_fill(~audio_mask.bool()[None], 0).to("cpu", torch.int64).numpy().tobytes())
    return f"{tokens.numel()}:{h.hexdigest()}"


class VoicePrefixCache:
    """LRU of slow-AR KV for prompt prefixes (the system turn with the reference voice).

    Entries are [H, n, hd] keys/values per layer, computed at positions 0..n-1, so a hit can be copied into
    any row of a left-padded batch. One cache serves one model (and dtype); `hit_rate` counts lookups.
    """

    def __init__(self, max_entries: int = 32) -> None:
        if max_entries < 1:
            raise ValueError(f"VoicePrefixCache: max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, list[tuple[Tensor, Tensor]]] = OrderedDict()
        self._owner: int | None = None
        self.hits = 0
        self.misses = 0

    def bind(self, model: torch.nn.Module) -> None:
        """Guard against sharing one cache between models (stale KV would be silently wrong)."""
        if self._owner is None:
            self._owner = id(model)
        elif self._owner != id(model):
            raise ValueError("VoicePrefixCache is bound to another model; use one cache per model")

    def get(self, key: str) -> list[tuple[Tensor, Tensor]] | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, kv: list[tuple[Tensor, Tensor]]) -> None:
        self._entries[key] = kv
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = 0
