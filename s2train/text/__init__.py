"""Text front-end: tokenizer, special tokens, the one prompt template, chunking (no Lightning/Hydra)."""

from s2train.text.chunking import chunk_text, split_speaker_turns
from s2train.text.prompt import (
    DEFAULT_SYSTEM_TEXT,
    Prompt,
    Reference,
    build_prompt,
    render_prompt,
    unconditional_prompt,
)
from s2train.text.special import IM_END, IM_START, PAD, VOICE, semantic_token, speaker_tag
from s2train.text.tokenizer import S2Tokenizer

__all__ = [
    "DEFAULT_SYSTEM_TEXT",
    "IM_END",
    "IM_START",
    "PAD",
    "Prompt",
    "Reference",
    "S2Tokenizer",
    "VOICE",
    "build_prompt",
    "chunk_text",
    "render_prompt",
    "semantic_token",
    "speaker_tag",
    "split_speaker_turns",
    "unconditional_prompt",
]
