"""Text normalization for WER/CER scoring (Seed-TTS-eval convention).

Seed-TTS-eval scores lower-cased text with all punctuation removed except the apostrophe, and applies no
number normalization. Reference texts in s2train may carry inline markup (``[whisper]`` tags and
``<|speaker:i|>`` turn markers) that is never spoken, so it is stripped before scoring.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "CHARACTER_LANGUAGES",
    "normalize_text",
    "number_to_words",
    "normalize_numbers",
    "strip_markup",
    "uses_cer",
]

# Languages scored by character error rate (no whitespace word boundaries).
CHARACTER_LANGUAGES = frozenset({"zh", "cmn", "yue", "ja"})

_TAG_RE = re.compile(r"\[[^\[\]]*\]")
_SPEAKER_RE = re.compile(r"<\|speaker:\s*\d+\s*\|>")
_SPECIAL_RE = re.compile(r"<\|[^|]*\|>")
_SPACE_RE = re.compile(r"\s+")
_NUMBER_RE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(?![\w])")

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def uses_cer(language: str) -> bool:
    """True when ``language`` is scored per character (Chinese and similar)."""
    return language.lower().split("-")[0] in CHARACTER_LANGUAGES


def strip_markup(text: str) -> str:
    """Removes ``[tag]`` instructions and ``<|speaker:i|>`` / ``<|...|>`` markers from ``text``."""
    text = _SPEAKER_RE.sub(" ", text)
    text = _SPECIAL_RE.sub(" ", text)
    text = _TAG_RE.sub(" ", text)
    return _SPACE_RE.sub(" ", text).strip()


def _under_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int, ordinal: bool = False) -> str:
    """Spells a non-negative integer in English (``1984`` -> ``one thousand nine hundred eighty-four``).

    Args:
        n: the integer, ``0 <= n < 10**15``.
        ordinal: spell ``first``/``twenty-third`` instead of ``one``/``twenty-three``.
    """
    if n < 0 or n >= 10**15:
        raise ValueError(f"number_to_words supports 0 <= n < 10**15, got {n}")
    words: list[str] = []
    rest = n
    for value, name in _SCALES:
        if rest >= value:
            words += _under_thousand(rest // value) + [name]
            rest %= value
    if rest or not words:
        words += _under_thousand(rest)
    if ordinal:
        head, _, last = words[-1].rpartition("-")
        if last in _ORDINAL_IRREGULAR:
            last = _ORDINAL_IRREGULAR[last]
        elif last.endswith("y"):
            last = last[:-1] + "ieth"
        else:
            last += "th"
        words[-1] = f"{head}-{last}" if head else last
    return " ".join(words)


def _spell_match(match: re.Match) -> str:
    integer, fraction, suffix = match.group(1), match.group(2), match.group(3)
    spoken = number_to_words(int(integer.replace(",", "")), ordinal=bool(suffix))
    if fraction:
        spoken += " point " + " ".join(_ONES[int(d)] for d in fraction)
    return spoken


def normalize_numbers(text: str) -> str:
    """Spells out English digit sequences (``3`` -> ``three``, ``2.5`` -> ``two point five``, ``21st``)."""
    return _NUMBER_RE.sub(_spell_match, text)


def normalize_text(text: str, language: str = "en", numbers: bool = False) -> str:
    """Normalizes a reference or hypothesis for scoring.

    Strips markup, lower-cases, removes punctuation except the apostrophe (curly apostrophes become ``'``)
    and collapses whitespace. For character-scored languages all whitespace is removed as well.

    Args:
        text: raw text.
        language: language code; ``zh``/``cmn``/... are scored per character.
        numbers: spell out digits first (English only; off in the Seed-TTS-eval protocol).

    Returns:
        The normalized string.
    """
    text = strip_markup(text)
    if numbers and not uses_cer(language):
        text = normalize_numbers(text)
    text = text.replace("\u2019", "'").replace("\u2018", "'").lower()
    # Hyphens join words ("twenty-one"); treat them as word separators like other punctuation.
    chars = []
    for ch in text:
        if ch == "'" or not unicodedata.category(ch).startswith(("P", "S")):
            chars.append(ch)
        else:
            chars.append(" ")
    text = _SPACE_RE.sub(" ", "".join(chars)).strip()
    if uses_cer(language):
        text = text.replace(" ", "")
    return text
