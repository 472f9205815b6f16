"""Which characters of a text the tokenizer never saw in training (and so the model cannot have learned)."""

from __future__ import annotations

import unicodedata

__all__ = ["describe_unseen", "unseen_characters"]


def unseen_characters(tokenizer, text: str) -> list[str]:
    """Distinct characters of ``text`` that ``tokenizer`` only spells as raw UTF-8 bytes.

    A byte-level BPE turns every character of its training text into one token; a character it never saw
    (Chinese or emoji fed to a tokenizer trained on English) falls back to two to four byte tokens the model
    never learned to voice. ASCII is one byte, so it always counts as seen.

    Args:
        tokenizer: anything with ``encode(str) -> list[int]`` (an ``S2Tokenizer``).
        text: the text to check (the transcript form, after any g2p).
    """
    out = []
    for ch in dict.fromkeys(text):
        if ord(ch) < 128 or ch.isspace():
            continue
        if len(tokenizer.encode(ch)) > 1:
            out.append(ch)
    return out


def describe_unseen(chars: list[str]) -> str:
    """``'你' (CJK), '😀' (emoji/symbol)``-style summary of at most eight characters."""

    def kind(ch: str) -> str:
        if unicodedata.category(ch) == "So":
            return "emoji/symbol"
        return unicodedata.name(ch, "unknown").split()[0].lower()

    shown = ", ".join(f"{ch!r} ({kind(ch)})" for ch in chars[:8])
    return shown + (f" and {len(chars) - 8} more" if len(chars) > 8 else "")
