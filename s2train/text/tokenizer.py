"""Byte-level BPE tokenizer with the S2 special tokens and a contiguous semantic-token range.

Id layout (the contract in docs/DESIGN.md): text BPE ids first, then the chat special tokens
(`<|im_start|> <|im_end|> <|voice|> <|pad|>`), then `<|semantic:0..N-1|>` as one contiguous block starting at
`semantic_start`. Byte-level pre-tokenization puts all 256 bytes in the base alphabet, so every Unicode string
encodes without unknown tokens and decodes back exactly.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from s2train.text.g2p import build_g2p, normalize_spec
from s2train.text.special import CHAT_SPECIAL_TOKENS, IM_END, IM_START, PAD, VOICE, semantic_token

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "s2_tokenizer.json"


class S2Tokenizer:
    """Wraps a `tokenizers.Tokenizer` and exposes the S2 special-token ids.

    Args:
        tokenizer: a `tokenizers.Tokenizer` that already contains the chat special tokens and the semantic
            range (use `train`, `from_file` or `load` rather than calling this directly).
        num_semantic: size of the `<|semantic:i|>` range.
    """

    def __init__(self, tokenizer: Tokenizer, num_semantic: int, g2p: str | None = None):
        self._tok = tokenizer
        self.num_semantic = int(num_semantic)
        self.g2p = g2p
        for name in CHAT_SPECIAL_TOKENS:
            if tokenizer.token_to_id(name) is None:
                raise ValueError(f"tokenizer lacks special token {name!r}")
        start = tokenizer.token_to_id(semantic_token(0))
        if start is None:
            raise ValueError("tokenizer lacks <|semantic:0|>")
        last = tokenizer.token_to_id(semantic_token(self.num_semantic - 1))
        if last != start + self.num_semantic - 1:
            raise ValueError(
                f"semantic tokens are not contiguous: <|semantic:0|>={start}, "
                f"<|semantic:{self.num_semantic - 1}|>={last}"
            )
        self.semantic_start = start
        self.im_start_id = tokenizer.token_to_id(IM_START)
        self.im_end_id = tokenizer.token_to_id(IM_END)
        self.voice_id = tokenizer.token_to_id(VOICE)
        self.pad_id = tokenizer.token_to_id(PAD)

    # ------------------------------------------------------------------ construction
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 2048,
        num_semantic: int = 4096,
        min_frequency: int = 2,
        g2p: str | None = None,
    ) -> S2Tokenizer:
        """Train a byte-level BPE on `texts` and append the special tokens and semantic range.

        Args:
            texts: corpus strings (any Unicode).
            vocab_size: size of the *text* BPE vocabulary (includes the 256-byte base alphabet); the special
                tokens and the semantic range come on top.
            num_semantic: number of `<|semantic:i|>` tokens (codebook-0 size of the codec).
            min_frequency: minimum pair count for a BPE merge.
            g2p: optional transcript front-end (`s2train.text.g2p.build_g2p`: "espeak" or "espeak:<voice>");
                the BPE is then trained on the converted texts and `transcript()` converts at use.
        """
        if vocab_size < 256:
            raise ValueError(f"vocab_size must be >= 256 (the byte alphabet), got {vocab_size}")
        tok = Tokenizer(models.BPE())
        # No regex split on the speaker markers: they are plain text on purpose.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
            special_tokens=[],
        )
        convert = build_g2p(g2p)
        if convert is not None:
            texts = list(texts)
            convert.prefetch(texts)
            texts = [convert(t) for t in texts]
        tok.train_from_iterator((t for t in texts), trainer=trainer)
        log.info("trained byte-level BPE with %d text tokens (g2p: %s)", tok.get_vocab_size(), g2p)
        out = cls._with_specials(tok, num_semantic)
        out.g2p = g2p
        out._g2p_fn = convert  # reuse the converter whose cache already holds the training texts
        return out

    @classmethod
    def from_file(cls, path: str | os.PathLike, num_semantic: int | None = None) -> S2Tokenizer:
        """Load any `tokenizer.json`; add the chat tokens and semantic range when missing.

        Args:
            path: a `tokenizer.json` file.
            num_semantic: semantic range size. None: use the range already present in the file.
        """
        tok = Tokenizer.from_file(str(path))
        present = _count_semantic(tok)
        if num_semantic is None:
            if present == 0:
                raise ValueError(f"{path} has no <|semantic:i|> tokens; pass num_semantic")
            num_semantic = present
        if present and present != num_semantic:
            raise ValueError(f"{path} has {present} semantic tokens, requested num_semantic={num_semantic}")
        return cls._with_specials(tok, num_semantic)

    @classmethod
    def _with_specials(cls, tok: Tokenizer, num_semantic: int) -> S2Tokenizer:
        if num_semantic < 1:
            raise ValueError(f"num_semantic must be >= 1, got {num_semantic}")
        missing = [t for t in CHAT_SPECIAL_TOKENS if tok.token_to_id(t) is None]
        if missing:
            tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
        if tok.token_to_id(semantic_token(0)) is None:
            tok.add_special_tokens(
                [AddedToken(semantic_token(i), special=True, normalized=False) for i in range(num_semantic)]
            )
        return cls(tok, num_semantic)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write `tokenizer.json` and a small metadata file into `directory` (atomically per file)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "num_semantic": self.num_semantic,
            "semantic_start": self.semantic_start,
            "vocab_size": self.vocab_size,
            "g2p": self.g2p,
        }
        # Write-then-rename so concurrent ranks never see a half-written file.
        for name, payload in ((TOKENIZER_FILE, self._tok.to_str()), (META_FILE, json.dumps(meta, indent=2))):
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(payload)
            os.replace(tmp, out / name)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> S2Tokenizer:
        """Load a tokenizer written by `save` (or any dir holding a `tokenizer.json` with a semantic range)."""
        d = Path(directory)
        path = d / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {TOKENIZER_FILE} in tokenizer dir {d}")
        num_semantic, g2p = None, None
        if (d / META_FILE).is_file():
            meta = json.loads((d / META_FILE).read_text())
            num_semantic, g2p = meta["num_semantic"], meta.get("g2p")
        tok = cls.from_file(path, num_semantic=num_semantic)
        tok.g2p = g2p
        return tok

    @staticmethod
    def exists(directory: str | os.PathLike) -> bool:
        """True when `directory` holds a saved tokenizer."""
        return (Path(directory) / TOKENIZER_FILE).is_file()

    # ------------------------------------------------------------------ use
    @property
    def vocab_size(self) -> int:
        """Total number of ids, including special and semantic tokens."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def backend(self) -> Tokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._tok

    def semantic_id(self, index: int) -> int:
        """Token id of `<|semantic:index|>`."""
        if not 0 <= index < self.num_semantic:
            raise ValueError(f"semantic index {index} outside [0, {self.num_semantic})")
        return self.semantic_start + index

    def is_semantic(self, token_id: int) -> bool:
        """True when `token_id` lies in the semantic range."""
        return self.semantic_start <= token_id < self.semantic_start + self.num_semantic

    @property
    def g2p(self) -> str | None:
        """Optional transcript front-end (`s2train.text.g2p`), applied by `transcript()` to the words a prompt
        speaks (never to control tokens); saved with the tokenizer so every user of it converts alike."""
        return self._g2p

    @g2p.setter
    def g2p(self, spec: str | None) -> None:
        self._g2p = normalize_spec(spec)
        self._g2p_fn = None  # built on first use (needs espeak-ng only when a transcript is converted)

    def _converter(self):
        if self._g2p_fn is None and self._g2p is not None:
            self._g2p_fn = build_g2p(self._g2p)
        return self._g2p_fn

    def transcript(self, text: str) -> str:
        """The form of a transcript that is tokenized: `text` itself, or its phonemes when `g2p` is set."""
        convert = self._converter()
        return text if convert is None else convert(text)

    def prefetch_transcripts(self, texts: Iterable[str]) -> None:
        """Convert many transcripts up front (a few threads) so later `transcript()` calls hit the cache."""
        convert = self._converter()
        if convert is not None:
            convert.prefetch(texts)

    def encode(self, text: str) -> list[int]:
        """Encode `text`; chat special tokens written literally in `text` become their ids."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Decode ids back to text (special and semantic tokens kept as their strings by default)."""
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """Id of a single token string, or None."""
        return self._tok.token_to_id(token)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        g2p = f", g2p={self.g2p!r}" if self.g2p else ""
        return (
            f"S2Tokenizer(vocab_size={self.vocab_size}, semantic_start={self.semantic_start}, "
            f"num_semantic={self.num_semantic}{g2p})"
        )


def _count_semantic(tok: Tokenizer) -> int:
    n = 0
    while tok.token_to_id(semantic_token(n)) is not None:
        n += 1
    return n
