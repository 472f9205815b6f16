"""JSONL manifests of (audio, transcript, speaker) items and their validation.

Paths in a manifest file are stored relative to the manifest's folder when the audio lives under it (so a
corpus folder can be moved or copied), absolute otherwise. :func:`read_manifest` always returns absolute
paths.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from s2train.data.audio import DEFAULT_MIN_SECONDS, BadAudioError, load_audio

log = logging.getLogger(__name__)

#: Durations are rounded to this many decimals on write so manifests are byte-stable across platforms.
DURATION_DECIMALS = 4


@dataclass
class ManifestItem:
    """One utterance.

    Attributes:
        id: unique id within the corpus.
        path: audio file (absolute after :func:`read_manifest`).
        text: transcript; may hold inline ``[tags]`` and ``<|speaker:i|>`` markers as plain text.
        speaker: speaker id (``"dialog:a+b"`` for two-voice dialogue items).
        language: BCP-47-ish code (``en``, ``es``, ``cmn``...).
        duration: seconds (0.0 = unknown; filled by :func:`validate_items`).
        split: ``train`` / ``val`` / ``test`` / ``heldout``.
        extra: any other manifest fields (e.g. the demo corpus's ``kind`` and ``tags``), kept on round-trip.
    """

    id: str
    path: str
    text: str
    speaker: str
    language: str = "en"
    duration: float = 0.0
    split: str = "train"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """Flat dict (``extra`` merged in) as written to JSONL / datasets."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        row.update(self.extra)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ManifestItem:
        """Inverse of :meth:`to_row`; unknown keys go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        missing = {"id", "path", "text", "speaker"} - row.keys()
        if missing:
            raise KeyError(f"manifest row {row.get('id', row)!r} lacks required field(s) {sorted(missing)}")
        known = {k: v for k, v in row.items() if k in names}
        known["duration"] = float(known.get("duration") or 0.0)
        return cls(**known, extra={k: v for k, v in row.items() if k not in names})


def read_manifest(path: str | Path) -> list[ManifestItem]:
    """Read a JSONL manifest; relative audio paths resolve against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    root = path.resolve().parent
    items = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = ManifestItem.from_row(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: bad manifest line: {e}") from e
            p = Path(item.path)
            item.path = str(p if p.is_absolute() else root / p)
            items.append(item)
    return items


def write_manifest(items: Iterable[ManifestItem], path: str | Path) -> Path:
    """Write items as JSONL with byte-deterministic output (sorted keys, rounded durations, UTF-8).

    Paths under the manifest's folder are written relative to it (posix separators).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.resolve().parent
    lines = []
    for item in items:
        row = item.to_row()
        p = Path(item.path)
        try:
            row["path"] = (p if p.is_absolute() else p.resolve()).relative_to(root).as_posix()
        except ValueError:
            row["path"] = str(p.resolve())
        row["duration"] = round(float(row["duration"]), DURATION_DECIMALS)
        lines.append(json.dumps(row, sort_keys=True, ensure_ascii=False))
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


@dataclass
class BadItemReport:
    """What :func:`validate_items` rejected.

    Attributes:
        items: ``(item, reason, detail)`` per rejected item, in input order.
        total: number of items checked.
    """

    items: list[tuple[ManifestItem, str, str]] = field(default_factory=list)
    total: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """Rejected items per reason (sorted by reason)."""
        return dict(sorted(Counter(reason for _, reason, _ in self.items).items()))

    def __len__(self) -> int:
        return len(self.items)

    def summary(self) -> str:
        """One line: ``3/120 items rejected: corrupt=1, silent=2``."""
        if not self.items:
            return f"0/{self.total} items rejected"
        per = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        return f"{len(self.items)}/{self.total} items rejected: {per}"

    def listing(self) -> str:
        """Every rejected item with its reason, one per line."""
        return "\n".join(f"  {it.id} [{reason}] {it.path}: {detail}" for it, reason, detail in self.items)


class BadManifestError(ValueError):
    """Raised by strict validation; ``.report`` holds every bad item."""

    def __init__(self, report: BadItemReport):
        self.report = report
        super().__init__(f"{report.summary()}\n{report.listing()}")


def _check_item(
    item: ManifestItem, sample_rate: int, min_seconds: float, max_seconds: float | None
) -> tuple[ManifestItem | None, str, str]:
    if not item.text or not item.text.strip():
        return None, "empty_text", "transcript is empty or whitespace"
    try:
        wav = load_audio(item.path, sample_rate, min_seconds=min_seconds)
    except BadAudioError as e:
        return None, e.reason, e.detail
    seconds = wav.shape[-1] / sample_rate
    if max_seconds is not None and seconds > max_seconds:
        return None, "too_long", f"{seconds:.2f}s > {max_seconds}s"
    return dataclasses.replace(item, duration=round(seconds, DURATION_DECIMALS)), "", ""


def validate_items(
    items: Sequence[ManifestItem],
    sample_rate: int,
    strict: bool = False,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    max_seconds: float | None = None,
    progress: bool = True,
) -> tuple[list[ManifestItem], BadItemReport]:
    """Decode every item's audio and check its transcript.

    Args:
        items: items to check.
        sample_rate: rate used to decode (affects only the duration computed).
        strict: raise one :class:`BadManifestError` listing every bad item instead of skipping them.
        min_seconds: shorter clips are ``too_short``.
        max_seconds: longer clips are ``too_long`` (None: no limit).
        progress: show a progress bar.

    Returns:
        ``(good_items, report)``: good items are copies with ``duration`` filled in; the report counts
        the skipped ones per reason.
    """
    good: list[ManifestItem] = []
    report = BadItemReport(total=len(items))
    for item in tqdm(items, desc="validating audio", disable=not progress or len(items) < 50, leave=False):
        checked, reason, detail = _check_item(item, sample_rate, min_seconds, max_seconds)
        if checked is None:
            report.items.append((item, reason, detail))
            if not strict:
                log.warning("skipping %s (%s): %s [%s]", item.id, item.path, reason, detail)
        else:
            good.append(checked)
    if report.items:
        if strict:
            raise BadManifestError(report)
        log.warning("%s", report.summary())
    return good, report


def load_items(source: str | Path, **kwargs: Any) -> list[ManifestItem]:
    """Alias of :func:`s2train.data.readers.load_items` (kept here because DESIGN.md names it)."""
    from s2train.data.readers import load_items as _load_items

    return _load_items(source, **kwargs)
