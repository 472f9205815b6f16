"""Extract codec codes for every utterance of a corpus into a ``datasets`` dataset.

    python -m s2train.data.encode codec=<codec dir> manifest=<corpus> out=<dir> [val_fraction=0.05]
        [test_fraction=0] [batch_size=8] [splits=train,val] [shard_size=256] [accelerator=cpu] [devices=1]
        [max_seconds=None] [speaker=<name>] [language=en]

``manifest=`` (alias ``source=``) is anything ``s2train.data.readers.load_items`` reads: a JSONL manifest, a
folder holding ``manifest.jsonl``, an LJSpeech folder (``metadata.csv`` + ``wavs/``), a fish-speech folder
(``SPEAKER/*.wav`` + ``.lab``), an audiofolder (``metadata.{csv,jsonl}`` with ``file_name``) or a saved
``datasets`` folder. Layouts without splits put every item in ``train``: pass ``val_fraction=`` (and
``test_fraction=`` for the eval suite's ``test`` group) to hold out a deterministic share by id hash,
otherwise training runs without validation (a warning says so). ``speaker=`` / ``language=`` label
layouts that carry none (LJSpeech, audiofolder). The items as encoded, splits included, are also written to
``out/manifest.jsonl``: give that to ``eval.py suite.evalset.path=`` to score the held-out items.

Runs as a Lightning ``predict`` loop (``EncodeModule.predict_step`` + the ``ShardWriter`` callback), so
``devices=N`` spreads the work over DDP ranks. Items are grouped in shards of ``shard_size``; each rank writes
its part of a shard to ``out/_shards/`` atomically (temp file + rename) and rank 0 then marks the shard done,
so an interrupted run resumes at the first unfinished shard. At the end the shards are merged into a
``datasets`` dataset saved to ``out`` with columns ``id, text, speaker, language, split, path, codes`` (codes:
int lists ``[K][T]``). Unreadable audio is skipped and counted by reason in ``out/summary.json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from s2train.cli import exit_on_help
from s2train.codec import load_codec
from s2train.data.audio import BadAudioError, load_audio
from s2train.data.manifest import ManifestItem, write_manifest
from s2train.data.readers import assign_splits, load_items

log = logging.getLogger(__name__)

COLUMNS = ("id", "text", "speaker", "language", "split", "path", "codes")


class _ItemAudio(Dataset):
    """Loads one manifest item per index; bad files come back as ``{"index", "bad": reason}``."""

    def __init__(self, items: list[ManifestItem], sample_rate: int, max_seconds: float | None):
        self.items, self.sample_rate, self.max_seconds = items, sample_rate, max_seconds

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        try:
            return {
                "index": i,
                "wav": load_audio(self.items[i].path, self.sample_rate, max_seconds=self.max_seconds),
            }
        except BadAudioError as err:
            log.warning("skipping %s", err)
            return {"index": i, "bad": err.reason}


def _collate(batch: list[dict]) -> dict:
    """Right-pad good clips to ``wav [B, 1, S_max]`` and keep their lengths; pass bad ones through."""
    good = [b for b in batch if "wav" in b]
    out: dict = {
        "bad": [(b["index"], b["bad"]) for b in batch if "bad" in b],
        "index": [b["index"] for b in good],
    }
    if good:
        n = max(b["wav"].shape[-1] for b in good)
        out["wav"] = torch.stack(
            [torch.nn.functional.pad(b["wav"], (0, n - b["wav"].shape[-1])) for b in good]
        )
        out["lengths"] = [b["wav"].shape[-1] for b in good]
    return out


class EncodeModule(pl.LightningModule):
    """Predict-only module: ``{"wav": [B, 1, S], "lengths", "index"}`` -> per-item codes ``[K, T_i]``."""

    def __init__(self, codec):
        super().__init__()
        self.codec = codec.eval()

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        result = {"index": batch["index"], "codes": [], "bad": batch["bad"]}
        if not batch["index"]:
            return result
        # The codec is causal, so right padding never changes the frames of the shorter clips.
        codes = self.codec.encode(batch["wav"]).cpu()
        hop = self.codec.hop_length
        result["codes"] = [codes[i, :, : max(1, -(-n // hop))] for i, n in enumerate(batch["lengths"])]
        return result


class ShardWriter(BasePredictionWriter):
    """Writes each rank's rows of the current shard to ``<shard_dir>/<shard>-rank<r>.jsonl`` atomically."""

    def __init__(self, shard_dir: Path):
        super().__init__(write_interval="epoch")
        self.shard_dir = shard_dir
        self.shard = -1
        self.items: list[ManifestItem] = []

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        rows, bad = [], []
        for pred in predictions:
            for i, codes in zip(pred["index"], pred["codes"]):
                row = {k: getattr(self.items[i], k) for k in COLUMNS[:-1]}
                rows.append({**row, "codes": codes.tolist()})
            bad += [{"id": self.items[i].id, "reason": reason} for i, reason in pred["bad"]]
        path = self.shard_dir / f"{self.shard:05d}-rank{trainer.global_rank}.jsonl"
        _atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))
        _atomic_write(path.with_suffix(".bad.json"), json.dumps(bad))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def encode_manifest(
    codec_dir: str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    batch_size: int = 8,
    splits: list[str] | None = None,
    shard_size: int = 256,
    accelerator: str = "cpu",
    devices: int | str = 1,
    max_seconds: float | None = None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    **reader_kwargs,
) -> dict:
    """Encode every (selected) corpus item and save a ``datasets`` dataset to ``out_dir``.

    Args:
        codec_dir: folder written by ``save_codec``.
        manifest: any corpus :func:`s2train.data.readers.load_items` reads (JSONL manifest, LJSpeech,
            fish-speech, audiofolder or saved ``datasets`` folder).
        out_dir: output folder; ``_shards/`` inside holds resumable partial results.
        batch_size: clips per encode batch.
        splits: keep only items of these splits (None: all).
        shard_size: items per resumable shard.
        accelerator, devices: Lightning Trainer settings (``devices > 1`` runs DDP).
        max_seconds: truncate clips longer than this.
        val_fraction, test_fraction: for a corpus without splits, the share held out as ``val`` / ``test``
            (deterministic, :func:`s2train.data.readers.assign_splits`).
        **reader_kwargs: passed to the layout's reader (``speaker=``, ``language=``).

    Returns:
        Summary dict: ``{"encoded", "bad", "bad_reasons", "dataset", "num_codebooks", "frame_rate"}``.
    """
    from datasets import Dataset as HFDataset

    out, shard_dir = Path(out_dir), Path(out_dir) / "_shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    items = assign_splits(load_items(manifest, **reader_kwargs), val_fraction, test_fraction)
    if items and {it.split for it in items} == {"train"}:
        log.warning(
            "%s: all %d items are in split 'train', so training will run without validation: pass "
            "val_fraction=0.05 (or a corpus with a split column)",
            manifest,
            len(items),
        )
    if splits:
        items = [it for it in items if it.split in set(splits)]
    if not items:
        raise ValueError(f"{manifest}: no items" + (f" in splits {splits}" if splits else ""))
    codec = load_codec(codec_dir)
    shards = [items[i : i + shard_size] for i in range(0, len(items), shard_size)]
    writer = ShardWriter(shard_dir)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        callbacks=[writer],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=True,
    )
    module = EncodeModule(codec)
    pending = [s for s in range(len(shards)) if not (shard_dir / f"{s:05d}.done").exists()]
    log.info("%d items in %d shards, %d to encode", len(items), len(shards), len(pending))
    for s in pending:
        writer.shard, writer.items = s, shards[s]
        loader = DataLoader(
            _ItemAudio(shards[s], codec.sample_rate, max_seconds), batch_size=batch_size, collate_fn=_collate
        )
        trainer.predict(module, dataloaders=loader, return_predictions=False)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            _atomic_write(shard_dir / f"{s:05d}.done", "")
    if not trainer.is_global_zero:
        return {}

    rows: dict[str, dict] = {}  # keyed by id: DDP samplers pad with repeated items
    bad: dict[str, str] = {}
    for f in sorted(shard_dir.glob("*-rank*.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            rows[row["id"]] = row
        for b in json.loads(f.with_suffix(".bad.json").read_text()):
            bad[b["id"]] = b["reason"]
    order = [it.id for it in items if it.id in rows]
    ds = HFDataset.from_dict({c: [rows[i][c] for i in order] for c in COLUMNS})
    ds.save_to_disk(str(out))
    write_manifest([it for it in items if it.id in rows], out / "manifest.jsonl")
    summary = {
        "encoded": len(order),
        "bad": len(bad),
        "bad_reasons": dict(Counter(bad.values())),
        "dataset": str(out),
        # The training side records which codec made these codes in its exported bundle.
        "codec": str(Path(codec_dir).resolve()),
        "num_codebooks": codec.num_codebooks,
        "frame_rate": codec.frame_rate,
        "splits": dict(Counter(rows[i]["split"] for i in order)),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("encoded %d items (%d bad: %s) -> %s", len(order), len(bad), summary["bad_reasons"], out)
    return summary


def _parse_cli(argv: list[str]) -> dict:
    exit_on_help(argv, __doc__)
    args = {}
    for a in argv:
        if "=" not in a:
            raise SystemExit(f"expected key=value arguments, got {a!r}\n{__doc__}")
        k, v = a.split("=", 1)
        args[k] = v
    if "source" in args:
        args.setdefault("manifest", args.pop("source"))
    missing = {"codec", "manifest", "out"} - args.keys()
    if missing:
        raise SystemExit(f"missing {sorted(missing)}\n{__doc__}")
    kw = {"codec_dir": args.pop("codec"), "manifest": args.pop("manifest"), "out_dir": args.pop("out")}
    conv = {"batch_size": int, "shard_size": int, "accelerator": str, "max_seconds": float,
            "val_fraction": float, "test_fraction": float, "speaker": str, "language": str}  # fmt: skip
    for k, v in args.items():
        if k == "splits":
            kw[k] = [s for s in v.split(",") if s]
        elif k == "devices":
            kw[k] = int(v) if v.isdigit() else v
        elif k in conv:
            kw[k] = None if v in ("None", "null") else conv[k](v)
        else:
            raise SystemExit(f"unknown argument {k!r}\n{__doc__}")
    return kw


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point (``python -m s2train.data.encode``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return encode_manifest(**_parse_cli(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
