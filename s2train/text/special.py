"""Special tokens of the S2 chat template.

Only the chat-structure tokens and the semantic range are *special* (atomic, never split by BPE).
`<|speaker:i|>` and inline `[tags]` deliberately stay plain text: tags are free-form natural language and
the model must read them through the ordinary text vocabulary.
"""

from __future__ import annotations

import re

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VOICE = "<|voice|>"
PAD = "<|pad|>"

#: Chat-structure special tokens, in the order they are added after the BPE vocabulary.
CHAT_SPECIAL_TOKENS: tuple[str, ...] = (IM_START, IM_END, VOICE, PAD)

_SEMANTIC_RE = re.compile(r"^<\|semantic:(\d+)\|>$")
_SPEAKER_RE = re.compile(r"<\|speaker:(\d+)\|>")


def semantic_token(index: int) -> str:
    """Return the string form of semantic token `index` (`<|semantic:index|>`)."""
    if index < 0:
        raise ValueError(f"semantic index must be >= 0, got {index}")
    return f"<|semantic:{index}|>"


def parse_semantic_token(token: str) -> int | None:
    """Return the index of a `<|semantic:i|>` string, or None for any other string."""
    match = _SEMANTIC_RE.match(token)
    return int(match.group(1)) if match else None


def speaker_tag(index: int) -> str:
    """Return the plain-text speaker marker `<|speaker:index|>`."""
    if index < 0:
        raise ValueError(f"speaker index must be >= 0, got {index}")
    return f"<|speaker:{index}|>"


def find_speaker_tags(text: str) -> list[tuple[int, int]]:
    """Return `(char_offset, speaker_index)` for every `<|speaker:i|>` marker in `text`."""
    return [(m.start(), int(m.group(1))) for m in _SPEAKER_RE.finditer(text)]
