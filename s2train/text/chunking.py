"""Split long text into chunks for multi-turn generation.

Splits first at `<|speaker:i|>` turns (each chunk keeps its marker), then, inside a turn longer than
`max_chars`, at sentence boundaries, then at whitespace as a last resort. Chunks concatenate back to the
input modulo whitespace at the cut points.
"""

from __future__ import annotations

import re

from s2train.text.special import find_speaker_tags

# Sentence ends: Latin punctuation followed by space, or CJK full stops (no space needed).
_SENTENCE_END = re.compile(r"(?<=[.!?;…])\s+|(?<=[。！？；])")


def split_speaker_turns(text: str) -> list[str]:
    """Split `text` before each `<|speaker:i|>` marker; text before the first marker is its own turn."""
    starts = [off for off, _ in find_speaker_tags(text)]
    cuts = sorted({0, *starts, len(text)})
    turns = [text[a:b].strip() for a, b in zip(cuts[:-1], cuts[1:])]
    return [t for t in turns if t]


def _split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _pack(pieces: list[str], max_chars: int, joiner: str = " ") -> list[str]:
    """Greedily join pieces into chunks of at most `max_chars` (a single longer piece stays whole)."""
    out: list[str] = []
    cur = ""
    for p in pieces:
        cand = f"{cur}{joiner}{p}" if cur else p
        if len(cand) <= max_chars or not cur:
            cur = cand
        else:
            out.append(cur)
            cur = p
    if cur:
        out.append(cur)
    return out


def _split_long(piece: str, max_chars: int) -> list[str]:
    if len(piece) <= max_chars:
        return [piece]
    words = piece.split()
    if len(words) > 1:
        return _pack(words, max_chars)
    # One unbroken run (e.g. CJK without punctuation): hard cut.
    return [piece[i : i + max_chars] for i in range(0, len(piece), max_chars)]


def chunk_text(text: str, max_chars: int = 200) -> list[str]:
    """Split `text` into chunks of at most `max_chars` characters where possible.

    Args:
        text: input text, may contain `<|speaker:i|>` markers and `[tags]`.
        max_chars: soft chunk size; a single speaker turn is never merged with another one.

    Returns:
        Non-empty chunks in order. A chunk that continues a speaker turn is prefixed with that turn's
        `<|speaker:i|>` marker so every chunk names its speaker.

    Raises:
        ValueError: empty text or `max_chars < 1`.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if not text or not text.strip():
        raise ValueError("chunk_text: text is empty")
    chunks: list[str] = []
    for turn in split_speaker_turns(text):
        tags = find_speaker_tags(turn)
        marker = ""
        body = turn
        if tags and tags[0][0] == 0:
            marker = f"<|speaker:{tags[0][1]}|>"
            body = turn[len(marker) :].strip()
        if len(turn) <= max_chars:
            chunks.append(turn)
            continue
        budget = max(1, max_chars - len(marker))
        pieces: list[str] = []
        for sent in _split_sentences(body):
            pieces.extend(_split_long(sent, budget))
        chunks.extend(marker + c for c in _pack(pieces, budget))
    return chunks
