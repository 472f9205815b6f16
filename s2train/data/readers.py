"""Read corpora in common on-disk layouts into :class:`ManifestItem` lists.

:func:`load_items` looks at what ``source`` is and dispatches:

=====================================  ==========================================================
source                                 reader
=====================================  ==========================================================
``*.jsonl`` file / folder with         :func:`read_manifest` (the demo corpus, any s2train manifest)
``manifest.jsonl``
folder with ``metadata.csv`` + wavs/   :func:`read_ljspeech` (``id|text|normalized_text``, no header)
folder with ``metadata.{csv,jsonl}``   :func:`read_audiofolder` (Hugging Face audiofolder: ``file_name``)
with a ``file_name`` column
folder from ``Dataset.save_to_disk``   :func:`read_hf_dataset`
folder of ``SPEAKER/*.wav`` + ``.lab`` :func:`read_fish_folder` (fish-speech layout)
any other string                       a Hugging Face hub dataset name (needs network)
=====================================  ==========================================================
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from s2train.data.manifest import ManifestItem, read_manifest

log = logging.getLogger(__name__)

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".opus")
_TEXT_COLUMNS = ("text", "transcription", "normalized_text", "sentence", "transcript")
_SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id")


def _first(row: dict[str, Any], names: tuple[str, ...], default: Any = None) -> Any:
    for n in names:
        if row.get(n) not in (None, ""):
            return row[n]
    return default


def read_fish_folder(root: str | Path, language: str = "en") -> list[ManifestItem]:
    """Fish-speech layout: ``root/SPEAKER/NAME.wav`` with the transcript in ``root/SPEAKER/NAME.lab``.

    Audio without a ``.lab`` is skipped with a warning (it cannot be used for TTS).
    """
    root = Path(root)
    items, missing_lab = [], 0
    for spk_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for audio in sorted(p for p in spk_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTS):
            lab = audio.with_suffix(".lab")
            if not lab.is_file():
                missing_lab += 1
                continue
            rel = audio.relative_to(spk_dir).with_suffix("").as_posix().replace("/", "_")
            items.append(
                ManifestItem(
                    id=f"{spk_dir.name}_{rel}",
                    path=str(audio.resolve()),
                    text=lab.read_text(encoding="utf-8").strip(),
                    speaker=spk_dir.name,
                    language=language,
                )
            )
    if missing_lab:
        log.warning("%s: skipped %d audio files without a .lab transcript", root, missing_lab)
    if not items:
        raise ValueError(f"{root}: no SPEAKER/*.wav + .lab pairs found (fish-speech layout)")
    return items


def read_ljspeech(root: str | Path, speaker: str | None = None, language: str = "en") -> list[ManifestItem]:
    """LJSpeech layout: ``root/metadata.csv`` (``id|text|normalized_text``) and ``root/wavs/ID.wav``.

    The normalized text is used when present (numbers spelled out), else the raw text.
    """
    root = Path(root)
    speaker = speaker or root.name
    items = []
    with (root / "metadata.csv").open(encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE), 1):
            if not row:
                continue
            if len(row) < 2:
                raise ValueError(f"{root / 'metadata.csv'}:{lineno}: expected id|text[|normalized_text]")
            text = row[2] if len(row) > 2 and row[2].strip() else row[1]
            items.append(
                ManifestItem(
                    id=row[0],
                    path=str((root / "wavs" / f"{row[0]}.wav").resolve()),
                    text=text.strip(),
                    speaker=speaker,
                    language=language,
                )
            )
    return items


def _audiofolder_rows(root: Path) -> list[dict[str, Any]]:
    if (root / "metadata.jsonl").is_file():
        with (root / "metadata.jsonl").open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    with (root / "metadata.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def read_audiofolder(
    root: str | Path, speaker: str | None = None, language: str = "en"
) -> list[ManifestItem]:
    """Hugging Face audiofolder: ``metadata.jsonl`` or ``metadata.csv`` with a ``file_name`` column.

    Read directly (no ``datasets`` audio decoding needed). Text comes from the first of
    ``text/transcription/normalized_text/sentence/transcript``; speaker from ``speaker/speaker_id``.
    """
    root = Path(root)
    items = []
    for i, row in enumerate(_audiofolder_rows(root)):
        if "file_name" not in row:
            raise ValueError(f"{root}: audiofolder metadata row {i} has no 'file_name' column")
        path = (root / row["file_name"]).resolve()
        items.append(
            ManifestItem(
                id=str(row.get("id") or Path(row["file_name"]).with_suffix("").as_posix().replace("/", "_")),
                path=str(path),
                text=str(_first(row, _TEXT_COLUMNS, "")).strip(),
                speaker=str(_first(row, _SPEAKER_COLUMNS, speaker or root.name)),
                language=str(row.get("language") or language),
                split=str(row.get("split") or "train"),
            )
        )
    return items


def _hf_rows_to_items(
    ds: Any, root: Path | None, split: str, audio_cache_dir: Path | None
) -> list[ManifestItem]:
    """Convert one ``datasets.Dataset`` to items without decoding audio."""
    from datasets import Audio

    audio_col = next((c for c, f in ds.features.items() if isinstance(f, Audio)), None)
    if audio_col is not None:
        ds = ds.cast_column(audio_col, Audio(decode=False))
    items = []
    for i, row in enumerate(ds):
        if audio_col is not None:
            audio = row[audio_col]
            path = audio.get("path")
            if audio.get("bytes"):
                if audio_cache_dir is None:
                    raise ValueError("dataset stores audio as bytes: pass audio_cache_dir= to extract it")
                suffix = Path(path).suffix if path else ".wav"
                path = audio_cache_dir / (hashlib.sha1(audio["bytes"]).hexdigest()[:16] + suffix)
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(audio["bytes"])
        else:
            path = row.get("path") or row.get("file_name")
        if not path:
            raise ValueError(f"dataset row {i} has neither an Audio column nor a 'path' column")
        p = Path(path)
        if not p.is_absolute() and root is not None:
            # s2train datasets store paths relative to the corpus root (the dataset's parent folder).
            p = next((c for c in (root / p, root.parent / p) if c.exists()), root.parent / p)
        row_id = row.get("id") or f"{split}_{i:06d}"
        extra = {k: v for k, v in row.items() if k in ("kind", "tags")}
        items.append(
            ManifestItem(
                id=str(row_id),
                path=str(p),
                text=str(_first(row, _TEXT_COLUMNS, "")).strip(),
                speaker=str(_first(row, _SPEAKER_COLUMNS, "unknown")),
                language=str(row.get("language") or "en"),
                duration=float(row.get("duration") or 0.0),
                split=str(row.get("split") or split),
                extra=extra,
            )
        )
    return items


def _dataset_to_items(ds: Any, root: Path | None, audio_cache_dir: Path | None) -> list[ManifestItem]:
    from datasets import DatasetDict

    if isinstance(ds, DatasetDict):
        return [
            it for name, part in ds.items() for it in _hf_rows_to_items(part, root, name, audio_cache_dir)
        ]
    return _hf_rows_to_items(ds, root, "train", audio_cache_dir)


def read_hf_dataset(root: str | Path, audio_cache_dir: str | Path | None = None) -> list[ManifestItem]:
    """A ``Dataset``/``DatasetDict`` saved with ``save_to_disk``; audio bytes are extracted to a cache."""
    from datasets import load_from_disk

    root = Path(root)
    cache = Path(audio_cache_dir) if audio_cache_dir else root / "_audio"
    return _dataset_to_items(load_from_disk(str(root)), root, cache)


def read_hub_dataset(
    name: str, split: str | None = None, audio_cache_dir: str | Path | None = None, **load_kwargs: Any
) -> list[ManifestItem]:
    """A dataset on the Hugging Face hub via ``datasets.load_dataset`` (network needed)."""
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise RuntimeError(
            f"{name!r} is not a local path, so it was taken as a hub dataset, but HF_DATASETS_OFFLINE/HF_HUB_OFFLINE "
            "is set: download it first (online) or pass a local folder / manifest.jsonl"
        )
    from datasets import load_dataset

    cache = Path(audio_cache_dir or Path.home() / ".cache" / "s2train" / "audio" / name.replace("/", "__"))
    return _dataset_to_items(load_dataset(name, split=split, **load_kwargs), None, cache)


def detect_kind(source: str | Path) -> str:
    """Name the layout of ``source``: manifest, ljspeech, audiofolder, hf_disk, fish or hub."""
    p = Path(source)
    if p.is_file():
        if p.suffix == ".jsonl":
            return "manifest"
        raise ValueError(f"{p}: unsupported file type (expected a .jsonl manifest)")
    if p.is_dir():
        if (p / "manifest.jsonl").is_file():
            return "manifest"
        if (p / "dataset_info.json").is_file() or (p / "dataset_dict.json").is_file():
            return "hf_disk"
        if (p / "metadata.jsonl").is_file():
            return "audiofolder"
        if (p / "metadata.csv").is_file():
            with (p / "metadata.csv").open(encoding="utf-8") as f:
                header = f.readline()
            return "audiofolder" if "file_name" in header.split(",") or "file_name" in header else "ljspeech"
        if any(c.is_dir() and any(c.glob("*.lab")) for c in p.iterdir()):
            return "fish"
        raise ValueError(
            f"{p}: unrecognised corpus folder: expected manifest.jsonl, metadata.csv (LJSpeech/audiofolder), "
            "a saved datasets folder, or SPEAKER/*.wav + .lab files"
        )
    # "owner/name" that is not on disk: a hub dataset (resolved by datasets.load_dataset).
    if isinstance(source, str) and source.count("/") == 1 and not source.startswith((".", "/", "~")):
        if not Path(source).suffix:
            return "hub"
    raise FileNotFoundError(f"corpus source not found: {source}")


def assign_splits(
    items: list[ManifestItem], val_fraction: float = 0.0, test_fraction: float = 0.0
) -> list[ManifestItem]:
    """Hold out a deterministic share of a corpus that has no splits of its own as ``val`` / ``test``.

    Layouts such as LJSpeech, fish-speech or a plain audiofolder put every item in ``train``, so a training
    run would silently skip validation. Items are ranked by a hash of their id (stable across runs, machines
    and file order); the first ``round(n * val_fraction)`` (at least 1 when the fraction is > 0) become
    ``val``, the next ``round(n * test_fraction)`` ``test``. A corpus that already has non-``train`` splits
    is returned unchanged (its own splits win; a warning says the fractions were ignored).

    Args:
        items: the corpus (not modified).
        val_fraction: share of items for ``val``.
        test_fraction: share of items for ``test`` (the eval suite's ``test`` group).

    Returns:
        New items with ``split`` set.
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise ValueError(
            f"val_fraction={val_fraction}, test_fraction={test_fraction}: need 0 <= each, sum < 1"
        )
    if not items or (val_fraction <= 0 and test_fraction <= 0):
        return list(items)
    present = sorted({it.split for it in items} - {"train"})
    if present:
        log.warning("corpus already has splits %s: val_fraction/test_fraction ignored", present)
        return list(items)

    def count(frac: float) -> int:
        return max(1, round(len(items) * frac)) if frac > 0 else 0

    n_val, n_test = count(val_fraction), count(test_fraction)
    if n_val + n_test >= len(items):
        raise ValueError(f"{len(items)} items are too few to hold out {n_val} val + {n_test} test")
    order = sorted(range(len(items)), key=lambda i: hashlib.sha1(items[i].id.encode()).hexdigest())
    split = {i: "val" for i in order[:n_val]} | {i: "test" for i in order[n_val : n_val + n_test]}
    log.info("held out %d val + %d test of %d items (by id hash)", n_val, n_test, len(items))
    return [dataclasses.replace(it, split=split.get(i, "train")) for i, it in enumerate(items)]


def load_items(source: str | Path, **kwargs: Any) -> list[ManifestItem]:
    """Load a corpus of any supported layout (see module docstring) as manifest items.

    Args:
        source: path or hub name.
        **kwargs: passed to the chosen reader (e.g. ``speaker=``, ``language=``, ``audio_cache_dir=``,
            ``split=`` for hub datasets).
    """
    kind = detect_kind(source)
    p = Path(source)
    log.info("reading %s as %s", source, kind)
    if kind == "manifest":
        return read_manifest(p / "manifest.jsonl" if p.is_dir() else p)
    if kind == "ljspeech":
        return read_ljspeech(p, **kwargs)
    if kind == "audiofolder":
        return read_audiofolder(p, **kwargs)
    if kind == "hf_disk":
        return read_hf_dataset(p, **kwargs)
    if kind == "fish":
        return read_fish_folder(p, **kwargs)
    return read_hub_dataset(str(source), **kwargs)
