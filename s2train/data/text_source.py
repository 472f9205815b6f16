"""Text for the demo corpus: a seeded sentence generator, inline-tag families, and foreign sentences.

Tags are plain text in a transcript (``"I think [whisper] we should leave now"``): a tag applies to the
span after it, up to the next tag or the end. :data:`TAG_FAMILIES` is the shared table of the tag families
the demo corpus renders for real, with the synonyms used in transcripts and the acoustic effect the eval
suite can check.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_RESOURCES = "s2train.data.resources"


@dataclass(frozen=True)
class TagFamily:
    """One family of inline tags that share an acoustic effect.

    Attributes:
        name: family key (``"whisper"``).
        synonyms: surface forms without brackets; ``synonyms[0]`` is the canonical tag.
        effect: the measurable change, ``"<feature>_<up|down>"`` (features: voicing, energy, rate, f0,
            pause, prominence).
    """

    name: str
    synonyms: tuple[str, ...]
    effect: str

    @property
    def canonical(self) -> str:
        """The canonical tag with brackets, e.g. ``"[whisper]"``."""
        return f"[{self.synonyms[0]}]"


#: Tag families rendered by the demo corpus (espeak-ng settings in :mod:`s2train.data.demo`).
TAG_FAMILIES: dict[str, TagFamily] = {
    f.name: f
    for f in (
        TagFamily(
            "whisper", ("whisper", "whispering", "whispers", "in a whisper", "whispered"), "voicing_down"
        ),
        TagFamily("loud", ("loud", "loudly", "shouting", "speak up", "very loud"), "energy_up"),
        TagFamily("soft", ("soft", "softly", "quietly", "quiet", "in a soft voice"), "energy_down"),
        TagFamily("fast", ("fast", "quickly", "speak quickly", "rapidly", "hurried"), "rate_up"),
        TagFamily("slow", ("slow", "slowly", "speak slowly", "very slow", "unhurried"), "rate_down"),
        TagFamily("high_pitch", ("high pitch", "high-pitched", "pitch up", "higher voice"), "f0_up"),
        TagFamily("low_pitch", ("low pitch", "low-pitched", "pitch down", "deep voice"), "f0_down"),
        TagFamily("pause", ("pause", "long pause", "beat", "break", "silence"), "pause_up"),
        TagFamily(
            "emphasis", ("emphasis", "emphasize", "emphasized", "stressed", "with emphasis"), "prominence_up"
        ),
    )
}

#: Lower-cased surface form (no brackets) -> family name.
TAG_LOOKUP: dict[str, str] = {syn: fam.name for fam in TAG_FAMILIES.values() for syn in fam.synonyms}

_TAG_RE = re.compile(r"\[([^\[\]]+)\]")
_SPEAKER_RE = re.compile(r"<\|speaker:(\d+)\|>")


@dataclass(frozen=True)
class TaggedSpan:
    """A stretch of transcript and the tag family governing it (None: untagged or unknown tag)."""

    family: str | None
    text: str
    tag: str | None = None  # surface tag as written, without brackets


def split_tagged(text: str) -> list[TaggedSpan]:
    """Split a transcript at inline tags: each tag governs the text up to the next tag.

    Unknown tags are kept (``tag`` set, ``family=None``) so callers can decide what to do with them.
    Empty spans are kept when a tag has no text after it (a trailing ``[pause]``).

    Example:
        ``split_tagged("I think [whisper] we go")`` ->
        ``[TaggedSpan(None, "I think"), TaggedSpan("whisper", "we go", "whisper")]``
    """
    spans: list[TaggedSpan] = []
    pos, family, tag = 0, None, None
    for m in _TAG_RE.finditer(text):
        chunk = text[pos : m.start()].strip()
        if chunk or tag is not None:
            spans.append(TaggedSpan(family, chunk, tag))
        tag = m.group(1).strip()
        family = TAG_LOOKUP.get(tag.lower())
        pos = m.end()
    chunk = text[pos:].strip()
    if chunk or tag is not None:
        spans.append(TaggedSpan(family, chunk, tag))
    return spans


def strip_tags(text: str) -> str:
    """Transcript without ``[tags]`` and ``<|speaker:i|>`` markers, whitespace collapsed (for ASR refs)."""
    return " ".join(_SPEAKER_RE.sub(" ", _TAG_RE.sub(" ", text)).split())


@cache
def _load(name: str) -> dict:
    return json.loads(resources.files(_RESOURCES).joinpath(name).read_text(encoding="utf-8"))


def vocabulary() -> dict:
    """The shipped template + word-list table (``resources/vocabulary.json``)."""
    return _load("vocabulary.json")


def foreign_sentences() -> dict[str, list[str]]:
    """Hand-written short sentences per language (``es``, ``de``, ``fr``, ``cmn``)."""
    return {k: v for k, v in _load("foreign_sentences.json").items() if not k.startswith("_")}


_SLOT_RE = re.compile(r"\{(\w+)\}")


class SentenceGenerator:
    """Seeded generator of varied, grammatical English sentences from the shipped templates.

    Args:
        seed: RNG seed; the same seed yields the same sequence.
        min_words: shortest accepted sentence.
        max_words: longest accepted sentence.
    """

    def __init__(self, seed: int = 0, min_words: int = 5, max_words: int = 15):
        self.rng = random.Random(seed)
        self.vocab = vocabulary()
        self.min_words, self.max_words = min_words, max_words

    def _fill(self, template: str) -> str:
        v, rng, chosen = self.vocab, self.rng, {}

        def slot(m: re.Match) -> str:
            key = m.group(1)
            if key == "name2":  # a second, different name
                return rng.choice([n for n in v["name"] if n != chosen.get("name")])
            if key == "a_adj":
                adj = rng.choice(v["adj"])
                return ("an " if adj[0] in "aeiou" else "a ") + adj
            if key.endswith("_cap"):
                word = rng.choice(v[key[:-4]])
                return word[0].upper() + word[1:]  # not str.capitalize(): keeps "Sunday" capitalised
            chosen[key] = rng.choice(v[key])
            return chosen[key]

        out = _SLOT_RE.sub(slot, template)
        return out[0].upper() + out[1:]

    def sentence(self) -> str:
        """One sentence of ``min_words..max_words`` words."""
        for _ in range(100):
            s = self._fill(self.rng.choice(self.vocab["templates"]))
            if self.min_words <= len(s.split()) <= self.max_words:
                return s
        raise RuntimeError(f"no template yields {self.min_words}-{self.max_words} words")

    def unique(self, n: int) -> list[str]:
        """``n`` distinct sentences (raises if the vocabulary cannot supply that many)."""
        seen: dict[str, None] = {}
        for _ in range(n * 50):
            seen.setdefault(self.sentence(), None)
            if len(seen) == n:
                return list(seen)
        raise RuntimeError(f"could only generate {len(seen)} distinct sentences, asked for {n}")


def insert_tag(sentence: str, tag: str, rng: random.Random, family: str | None = None) -> str:
    """Put ``[tag]`` at a word boundary chosen so the tag's effect is clear.

    Most families govern the larger, final part of the sentence (tag after 0..n/3 words, so some items
    keep an untagged lead-in as a within-item baseline). ``pause`` needs speech on both sides (after 2..n/2
    words); ``emphasis`` stresses a short final phrase (1-2 words), since prominence only shows against
    unstressed context.
    """
    words = sentence.split()
    n = len(words)
    if family == "emphasis":
        cut = n - rng.randint(1, min(2, n - 1))
    elif family == "pause":
        cut = rng.randint(min(2, n - 1), max(min(2, n - 1), n // 2))
    else:
        cut = rng.randint(0, max(1, n // 3))
    return " ".join(words[:cut] + [f"[{tag}]"] + words[cut:])
