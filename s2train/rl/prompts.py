"""Prompts for GRPO rollouts: texts to speak, each with a reference voice.

A prompt is a plain dict ``{"id", "text", "reference_path", "reference_text", "speaker", "language",
"tags"}``; the GRPO module loads and encodes the reference audio itself (it owns the codec), so this data
module stays independent of codec and tokenizer. Two sources:

- a manifest (``s2train.data.manifest`` JSONL): every item of ``split`` becomes a prompt whose reference is
  another item of the same speaker (the next one, cyclically); speakers with one item are skipped;
- a prompts JSONL with those keys per line (``reference_text`` and ``tags`` optional).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)

_TAG_RE = re.compile(r"\[([^\[\]]+)\]")


def prompts_from_manifest(manifest: str | Path, split: str | None = "train") -> list[dict[str, Any]]:
    """One prompt per manifest item of ``split`` (None: all), voiced by another clip of the same speaker.

    References are taken from the speaker's untagged clips when there are any (a whispered reference would
    make every rendition whisper); multi-voice items (``dialog:...`` speakers) are skipped, as are speakers
    with a single clip.
    """
    from s2train.data.manifest import read_manifest

    items = [it for it in read_manifest(manifest) if split is None or it.split == split]
    by_speaker = defaultdict(list)
    for it in items:
        if not it.speaker.startswith("dialog:"):
            by_speaker[it.speaker].append(it)
    prompts = []
    for speaker, group in by_speaker.items():
        pool = [it for it in group if not _TAG_RE.search(it.text)] or group
        if len(group) < 2:
            log.warning("speaker %r has one %s clip: no reference voice, skipped", speaker, split)
            continue
        for i, it in enumerate(group):
            refs = [r for r in pool if r.id != it.id]
            if not refs:
                continue
            ref = refs[i % len(refs)]
            tags = it.extra.get("tags") or _TAG_RE.findall(it.text)
            prompts.append(
                {
                    "id": it.id,
                    "text": it.text,
                    "reference_path": ref.path,
                    "reference_text": ref.text,
                    "speaker": speaker,
                    "language": it.language,
                    "tags": list(tags) if isinstance(tags, list | tuple) else [str(tags)],
                }
            )
    if not prompts:
        raise ValueError(f"{manifest}: no usable prompts in split {split!r} (need >= 2 clips per speaker)")
    return prompts


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """Read a prompts JSONL (``text`` and ``reference_path`` required per line); relative paths resolve
    against the file's directory."""
    p = Path(path)
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [k for k in ("text", "reference_path") if not row.get(k)]
        if missing:
            raise ValueError(f"{p}:{n}: prompt lacks {missing}")
        ref = Path(row["reference_path"])
        row["reference_path"] = str(ref if ref.is_absolute() else p.parent / ref)
        row.setdefault("id", f"{p.stem}-{n}")
        row.setdefault("reference_text", "")
        row.setdefault("language", "en")
        row.setdefault("tags", _TAG_RE.findall(row["text"]))
        out.append(row)
    if not out:
        raise ValueError(f"{p}: no prompts")
    return out


class PromptDataset(Dataset):
    """A list of prompt dicts."""

    def __init__(self, prompts: list[dict[str, Any]]):
        self.prompts = prompts

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(self.prompts[i])


def collate_prompts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep prompts as a list of dicts (rollouts handle them one by one)."""
    return items


class PromptDataModule(pl.LightningDataModule):
    """Serves batches of prompts (lists of dicts) for GRPO.

    Args:
        manifest: a manifest JSONL (prompts from ``split``); or
        prompts: a prompts JSONL. Exactly one of the two.
        split: manifest split to use.
        batch_size: prompts per step (each gets ``group_size`` rollouts).
        shuffle: reshuffle each epoch (seeded by Lightning's global seed).
        num_workers: DataLoader workers (prompts are tiny: 0 is fine).
    """

    def __init__(
        self,
        manifest: str | None = None,
        prompts: str | None = None,
        split: str | None = "train",
        batch_size: int = 2,
        shuffle: bool = True,
        num_workers: int = 0,
    ):
        super().__init__()
        if (manifest is None) == (prompts is None):
            raise ValueError("PromptDataModule: give exactly one of `manifest` or `prompts`")
        self.manifest, self.prompts_path, self.split = manifest, prompts, split
        self.batch_size, self.shuffle, self.num_workers = int(batch_size), bool(shuffle), int(num_workers)
        self.dataset: PromptDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            rows = (
                prompts_from_manifest(self.manifest, self.split)
                if self.manifest is not None
                else read_prompts(self.prompts_path)
            )
            self.dataset = PromptDataset(rows)
            log.info("GRPO prompts: %d", len(rows))

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_prompts,
            drop_last=False,
            generator=torch.Generator().manual_seed(torch.initial_seed() % 2**31),
        )


__all__ = ["PromptDataModule", "PromptDataset", "collate_prompts", "prompts_from_manifest", "read_prompts"]
