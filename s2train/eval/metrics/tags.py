"""Tag adherence: does rendering a text with an inline tag move the expected acoustic feature?

The check is paired: the same text rendered with and without the tag (same voice, same seed), features from
:mod:`s2train.eval.tag_features`, and the family's expected change from the taxonomy ``eval/tags.yaml``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from s2train.eval.tag_features import FEATURE_NAMES, TagFeatures, extract_features, speech_bounds

__all__ = [
    "DEFAULT_TAXONOMY",
    "FamilySpec",
    "TagResult",
    "Taxonomy",
    "load_taxonomy",
    "tag_effect",
    "tag_effects_for_text",
    "tag_pass_rates",
    "tag_span_fractions",
    "tags_in_text",
]

DEFAULT_TAXONOMY = Path(__file__).resolve().parents[3] / "eval" / "tags.yaml"
UNSCORED = "unscored"
_MEASURES = ("difference", "log_ratio", "semitones")
_TAG_RE = re.compile(r"\[([^\[\]]+)\]")

Span = tuple[float, float]


def _key(tag: str) -> str:
    return " ".join(tag.strip().strip("[]").lower().replace("-", " ").replace("_", " ").split())


def tags_in_text(text: str) -> list[str]:
    """The inline tags of ``text`` in order, without brackets (``"a [whisper] b"`` -> ``["whisper"]``)."""
    return [m.group(1).strip() for m in _TAG_RE.finditer(text)]


@dataclass(frozen=True)
class FamilySpec:
    """Expected change for one tag family (see ``eval/tags.yaml``)."""

    name: str
    synonyms: tuple[str, ...]
    feature: str
    measure: str
    direction: str
    min_effect: float

    def effect(self, with_value: float, without_value: float) -> float:
        """Signed effect (positive = expected direction); nan when a value is missing or non-positive."""
        if not (math.isfinite(with_value) and math.isfinite(without_value)):
            return float("nan")
        if self.measure == "difference":
            raw = with_value - without_value
        else:
            if with_value <= 0 or without_value <= 0:
                return float("nan")
            raw = math.log(with_value / without_value)
            if self.measure == "semitones":
                raw *= 12.0 / math.log(2.0)
        return raw if self.direction == "up" else -raw


@dataclass(frozen=True)
class Taxonomy:
    """Tag families and a synonym index."""

    families: dict[str, FamilySpec]

    def resolve(self, tag: str) -> FamilySpec | None:
        """The family of ``tag`` (brackets, case, '-'/'_' ignored), or None when unknown."""
        key = _key(tag)
        for fam in self.families.values():
            if key == _key(fam.name) or key in {_key(s) for s in fam.synonyms}:
                return fam
        return None


@lru_cache(maxsize=8)
def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Reads and validates a taxonomy YAML (default: the repository's ``eval/tags.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_TAXONOMY
    if not path.is_file():
        raise FileNotFoundError(f"tag taxonomy {path} not found (pass taxonomy=<path to tags.yaml>)")
    raw = yaml.safe_load(path.read_text()) or {}
    families = {}
    for name, spec in (raw.get("families") or {}).items():
        where = f"{path}: family {name!r}"
        missing = {"feature", "measure", "direction", "min_effect"} - set(spec)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)}")
        if spec["feature"] not in FEATURE_NAMES:
            raise ValueError(f"{where}: unknown feature {spec['feature']!r} (one of {FEATURE_NAMES})")
        if spec["measure"] not in _MEASURES:
            raise ValueError(f"{where}: measure must be one of {_MEASURES}, got {spec['measure']!r}")
        if spec["direction"] not in ("up", "down"):
            raise ValueError(f"{where}: direction must be up or down, got {spec['direction']!r}")
        families[name] = FamilySpec(
            name=name,
            synonyms=tuple(str(s) for s in spec.get("synonyms", [])),
            feature=spec["feature"],
            measure=spec["measure"],
            direction=spec["direction"],
            min_effect=float(spec["min_effect"]),
        )
    if not families:
        raise ValueError(f"{path}: no tag families defined")
    seen: dict[str, str] = {}
    for fam in families.values():
        for syn in (fam.name, *fam.synonyms):
            if seen.setdefault(_key(syn), fam.name) != fam.name:
                raise ValueError(
                    f"{path}: synonym {syn!r} is listed under {seen[_key(syn)]!r} and {fam.name!r}"
                )
    return Taxonomy(families)


@dataclass(frozen=True)
class TagResult:
    """Outcome of one paired check. ``family == "unscored"`` (and ``passed`` None) for unknown tags."""

    tag: str
    family: str
    feature: str | None
    effect: float
    passed: bool | None
    with_value: float = float("nan")
    without_value: float = float("nan")
    min_effect: float = float("nan")

    def as_dict(self) -> dict:
        """Plain mapping for JSON/CSV rows."""
        return asdict(self)


def tag_effect(
    wav_with: np.ndarray,
    wav_without: np.ndarray,
    sr: int,
    tag: str,
    span: Span | None = None,
    span_without: Span | None = None,
    taxonomy: Taxonomy | str | Path | None = None,
) -> TagResult:
    """Measures whether ``tag`` moved its feature between two renderings of the same text.

    Args:
        wav_with: ``[S]`` rendering with the tag.
        wav_without: ``[S]`` rendering without it.
        sr: sample rate of both.
        tag: the tag, with or without brackets (``"[speak quickly]"``).
        span: ``(start_s, end_s)`` of the tagged stretch in ``wav_with``; whole clip when None.
        span_without: the same stretch in ``wav_without`` (defaults to the whole clip). Duration-based
            families (fast/slow) need matching stretches in both.
        taxonomy: a :class:`Taxonomy` or a path to one (default ``eval/tags.yaml``).

    Returns:
        A :class:`TagResult`; a missing feature value (e.g. no voiced frame for F0) gives a failed check with
        nan effect.
    """
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    fam = tax.resolve(tag)
    if fam is None:
        return TagResult(tag=tag, family=UNSCORED, feature=None, effect=float("nan"), passed=None)
    feats_with: TagFeatures = extract_features(wav_with, sr, span)
    feats_without: TagFeatures = extract_features(wav_without, sr, span_without)
    w, wo = getattr(feats_with, fam.feature), getattr(feats_without, fam.feature)
    effect = fam.effect(w, wo)
    return TagResult(
        tag=tag,
        family=fam.name,
        feature=fam.feature,
        effect=effect,
        passed=bool(math.isfinite(effect) and effect >= fam.min_effect),
        with_value=float(w),
        without_value=float(wo),
        min_effect=fam.min_effect,
    )


# Features that are durations or silences: a tag changes them for the whole clip, and a text-proportional
# span would cut through the very stretch that got longer or shorter, so these are always measured whole.
_WHOLE_CLIP_FEATURES = ("phonation_s", "speech_s", "pause_fraction", "speaking_rate")


def tag_span_fractions(text: str) -> list[tuple[str, float, float]]:
    """Each tag of ``text`` with the share of the spoken text it governs, as ``(tag, start, end)`` in [0, 1].

    A tag governs the words after it up to the next tag; shares are by character count of the untagged text
    (a rough stand-in for time without an aligner).
    """
    pieces = _TAG_RE.split(text)  # [text, tag, text, tag, text, ...]
    lengths = [len(" ".join(p.split())) for p in pieces[0::2]]
    total = max(sum(lengths), 1)
    out, pos = [], lengths[0]
    for i, tag in enumerate(pieces[1::2]):
        n = lengths[i + 1]
        out.append((tag.strip(), pos / total, (pos + n) / total))
        pos += n
    return out


def tag_effects_for_text(
    wav_with: np.ndarray,
    wav_without: np.ndarray,
    sr: int,
    text: str,
    taxonomy: Taxonomy | str | Path | None = None,
) -> list[TagResult]:
    """Checks every tag of ``text`` on a with/without pair of the same text.

    With one tag the whole clips are compared. With several, level/pitch/voicing families are measured over
    the stretch their words take in each clip (estimated from character shares of the speech region);
    duration and pause families stay whole-clip.
    """
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    spans = tag_span_fractions(text)
    if len(spans) <= 1:
        return [tag_effect(wav_with, wav_without, sr, tag, taxonomy=tax) for tag, _, _ in spans]
    bounds_with, bounds_without = speech_bounds(wav_with, sr), speech_bounds(wav_without, sr)

    def to_seconds(bounds: tuple[float, float], lo: float, hi: float) -> Span | None:
        start, end = bounds
        span = (start + lo * (end - start), start + hi * (end - start))
        return span if span[1] - span[0] >= 0.2 else None  # too short to measure: fall back to the whole clip

    results = []
    for tag, lo, hi in spans:
        fam = tax.resolve(tag)
        if fam is None or fam.feature in _WHOLE_CLIP_FEATURES:
            results.append(tag_effect(wav_with, wav_without, sr, tag, taxonomy=tax))
            continue
        span_w, span_wo = to_seconds(bounds_with, lo, hi), to_seconds(bounds_without, lo, hi)
        if span_w is None or span_wo is None:
            span_w = span_wo = None
        results.append(tag_effect(wav_with, wav_without, sr, tag, span_w, span_wo, taxonomy=tax))
    return results


def tag_pass_rates(results: Sequence[TagResult]) -> dict:
    """Summarizes paired checks per family.

    Returns:
        ``{"families": {family: {"n", "passed", "pass_rate", "effect_mean", "effect_median", "min_effect",
        "feature"}}, "pass_rate": overall over scored checks, "macro_pass_rate": mean of family rates,
        "n_scored", "n_unscored"}``.
    """
    families: dict[str, dict] = {}
    scored = [r for r in results if r.family != UNSCORED]
    for fam in sorted({r.family for r in scored}):
        rows = [r for r in scored if r.family == fam]
        effects = np.asarray([r.effect for r in rows], dtype=np.float64)
        finite = effects[np.isfinite(effects)]
        passed = sum(bool(r.passed) for r in rows)
        families[fam] = {
            "n": len(rows),
            "passed": passed,
            "pass_rate": passed / len(rows),
            "effect_mean": float(finite.mean()) if finite.size else float("nan"),
            "effect_median": float(np.median(finite)) if finite.size else float("nan"),
            "min_effect": rows[0].min_effect,
            "feature": rows[0].feature,
        }
    n_pass = sum(f["passed"] for f in families.values())
    return {
        "families": families,
        "pass_rate": n_pass / len(scored) if scored else float("nan"),
        "macro_pass_rate": float(np.mean([f["pass_rate"] for f in families.values()]))
        if families
        else float("nan"),
        "n_scored": len(scored),
        "n_unscored": len(results) - len(scored),
    }
