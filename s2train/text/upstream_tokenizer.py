"""The released S2 Pro tokenizer (Qwen3 byte-level BPE `tokenizer.json` + Fish special tokens) as an S2Tokenizer.

The released `tokenizer.json` already holds the chat tokens s2train needs (`<|im_start|> <|im_end|> <|voice|>
<|pad|>`) and the contiguous `<|semantic:0..4095|>` range at the ids the weights were trained with (151678..),
plus upstream-only tokens (`<|endoftext|>`, `<|text|>`, `<|interleave|>`, `<|audio_start|>`, `<|audio_end|>`,
`<|audio_pad|>`, ...). `UpstreamTokenizer` never renumbers anything: a token declared in `tokenizer_config.json`
at another id than `tokenizer.json` gives, or a semantic range disagreeing with `config.json`, is an error.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer

from s2train.text.tokenizer import S2Tokenizer, _count_semantic

log = logging.getLogger(__name__)

HF_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
UPSTREAM_EXTRA_TOKENS = (
    "<|endoftext|>",
    "<|text|>",
    "<|interleave|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_pad|>",
)


class UpstreamTokenizer(S2Tokenizer):
    """`S2Tokenizer` over a released S2 Pro tokenizer directory; same interface, plus the upstream ids.

    Attributes (beyond S2Tokenizer's):
        extra_ids: ids of the upstream-only special tokens present (`<|endoftext|>` -> id, ...).
        eos_id / audio_pad_id: `<|endoftext|>` / `<|audio_pad|>` ids or None.
        model_vocab_size: rows of the model's embedding table from `config.json` (>= vocab_size; the release
            pads 155774 tokens to 155776 rows), or None.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        num_semantic: int,
        hf_files: dict[str, str] | None = None,
        model_vocab_size: int | None = None,
    ) -> None:
        super().__init__(tokenizer, num_semantic)
        self.hf_files = dict(hf_files or {})
        self.extra_ids = {t: i for t in UPSTREAM_EXTRA_TOKENS if (i := tokenizer.token_to_id(t)) is not None}
        self.eos_id = self.extra_ids.get("<|endoftext|>")
        self.audio_pad_id = self.extra_ids.get("<|audio_pad|>")
        self.model_vocab_size = model_vocab_size

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> UpstreamTokenizer:
        """Load `tokenizer.json` (+ `tokenizer_config.json`, + `config.json` for the checks) from `directory`.

        Raises:
            FileNotFoundError: no tokenizer.json.
            ValueError: special tokens at ids other than declared, missing chat tokens, or a semantic range that
                disagrees with config.json.
        """
        d = Path(directory)
        path = d / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {d}")
        text = path.read_text(encoding="utf-8")
        tok = Tokenizer.from_str(text)
        hf = {name: (d / name).read_text(encoding="utf-8") for name in HF_FILES if (d / name).is_file()}
        added = _add_declared_tokens(tok, hf.get("tokenizer_config.json"), d)
        if not added:
            hf["tokenizer.json"] = text  # unchanged: save() writes the original bytes back
        num_semantic = _count_semantic(tok)
        if num_semantic == 0:
            raise ValueError(f"{path} has no <|semantic:i|> tokens; not an S2 tokenizer")
        model_vocab = None
        if (d / "config.json").is_file():
            cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
            start, end = cfg.get("semantic_start_token_id"), cfg.get("semantic_end_token_id")
            first, last = (
                tok.token_to_id("<|semantic:0|>"),
                tok.token_to_id(f"<|semantic:{num_semantic - 1}|>"),
            )
            if start is not None and (start, end) != (first, last):
                raise ValueError(
                    f"{d}: config.json semantic ids [{start}, {end}] != tokenizer.json <|semantic:0..{num_semantic - 1}|> "
                    f"at [{first}, {last}]"
                )
            model_vocab = (cfg.get("text_config") or {}).get("vocab_size")
        out = cls(tok, num_semantic, hf, model_vocab)
        if model_vocab is not None and out.vocab_size > model_vocab:
            raise ValueError(f"{d}: tokenizer has {out.vocab_size} ids but the model only {model_vocab} rows")
        log.info("loaded upstream tokenizer from %s: %r", d, out)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> UpstreamTokenizer:
        """Same as `from_pretrained` (the S2Tokenizer interface)."""
        return cls.from_pretrained(directory)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write S2Tokenizer's files plus the HF files, so both s2train and upstream tools can load the dir."""
        out = super().save(directory)
        for name, text in self.hf_files.items():
            (out / name).write_text(text, encoding="utf-8")
        return out


def _add_declared_tokens(tok: Tokenizer, config_text: str | None, where: Path) -> list[str]:
    """Check `added_tokens_decoder` of tokenizer_config.json against tokenizer.json; append tokens missing from
    tokenizer.json when they directly follow its last id (anything else would renumber). Returns those added."""
    if not config_text:
        return []
    declared = json.loads(config_text).get("added_tokens_decoder", {})
    wrong, missing = [], []
    for id_str, info in sorted(declared.items(), key=lambda kv: int(kv[0])):
        actual = tok.token_to_id(info["content"])
        if actual is None:
            missing.append((int(id_str), info))
        elif actual != int(id_str):
            wrong.append(f"{info['content']}: tokenizer.json {actual}, tokenizer_config.json {id_str}")
    if wrong:
        raise ValueError(f"{where}: special tokens at different ids in the two files: {wrong}")
    size = tok.get_vocab_size(with_added_tokens=True)
    if missing and [i for i, _ in missing] != list(range(size, size + len(missing))):
        raise ValueError(
            f"{where}: tokenizer_config.json declares {len(missing)} tokens absent from tokenizer.json at ids "
            f"{[i for i, _ in missing][:5]}... that do not follow its last id {size - 1}"
        )
    for _, info in missing:
        special = bool(info.get("special", True))
        at = AddedToken(info["content"], special=special, normalized=False)
        if special:
            tok.add_special_tokens([at])
        else:
            tok.add_tokens([at])
    return [info["content"] for _, info in missing]


def is_upstream_tokenizer_dir(path: str | os.PathLike) -> bool:
    """True for a directory with a released-style tokenizer (tokenizer.json next to tokenizer_config.json or
    a fish_qwen3_omni config.json)."""
    d = Path(path)
    if not (d / "tokenizer.json").is_file():
        return False
    if (d / "tokenizer_config.json").is_file():
        return True
    try:
        return (
            json.loads((d / "config.json").read_text(encoding="utf-8")).get("model_type") == "fish_qwen3_omni"
        )
    except (OSError, json.JSONDecodeError):
        return False
