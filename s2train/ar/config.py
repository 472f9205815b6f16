"""Configuration of the Dual-AR model: one dataclass whose fields are the keys of `configs/model/*.yaml`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Fields that may be left `None` in a yaml file and filled from the tokenizer before the model is built.
TOKENIZER_FIELDS = ("vocab_size", "semantic_start", "num_semantic")


@dataclass
class DualARConfig:
    """Sizes and numerics of the slow (time) and fast (codebook) transformers.

    The slow AR is a Qwen3-style decoder over text + semantic tokens; the fast AR is a short depth transformer
    over the K codebooks of one frame. `codebook_size` is the fast AR's shared vocabulary (the largest
    codebook); `codebook_sizes` optionally lists the true per-codebook sizes so samplers can mask the unused
    tail of the shared vocabulary.
    """

    vocab_size: int | None = None
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 16
    ffn_dim: int = 192
    rope_base: float = 1e6
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    max_seq_len: int = 2048
    num_codebooks: int = 4
    codebook_size: int = 64
    codebook_sizes: list[int] | None = None
    semantic_start: int | None = None
    num_semantic: int | None = None
    fast_dim: int = 64
    fast_n_layers: int = 1
    fast_n_heads: int = 4
    fast_n_kv_heads: int = 2
    fast_head_dim: int = 16
    fast_ffn_dim: int = 192
    dropout: float = 0.0
    # Training only: probability that an audio frame's input embedding (semantic token + all codebooks) is
    # replaced by zeros, per position. Like Tacotron's always-on pre-net dropout, it weakens the shortcut of
    # predicting codes from the codes before them, so the slow AR has to lean on the transcript (the alignment).
    # Generation never drops (inference runs the model in eval mode).
    audio_input_dropout: float = 0.0
    # Per-head q/k RMSNorm in the slow / fast attention (released S2 Pro: slow yes, fast no), and a bias on the
    # fast AR's input projection when fast_dim != dim (upstream's project_in has one).
    qk_norm: bool = True
    fast_qk_norm: bool = True
    fast_input_bias: bool = False
    # S2 trained with cos/sin tables rounded to bf16; fp32 tables change the numerics of released weights.
    rope_bf16_tables: bool = True
    # Angles in fp32 as upstream computes them (set by the S2 Pro importer and `configs/model/s2pro.yaml`, so a
    # fine-tuned S2 Pro keeps the released tables after a bundle round trip); s2train-native models use fp64.
    rope_fp32_angles: bool = False

    def __post_init__(self) -> None:
        if self.codebook_sizes is not None:
            self.codebook_sizes = [int(c) for c in self.codebook_sizes]
        # YAML 1.1 reads "1e-6" as a string; accept it rather than fail deep inside a layer.
        for name in ("rope_base", "norm_eps", "dropout", "audio_input_dropout"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    setattr(self, name, float(value))
                except ValueError as e:
                    raise ValueError(f"DualARConfig.{name} must be a number, got {value!r}") from e

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None = None, **overrides: Any) -> DualARConfig:
        """Build from a plain dict (a yaml node); unknown keys raise, `_target_`-style keys are ignored."""
        data = dict(d or {})
        data.update(overrides)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in names and not k.startswith("_"))
        if unknown:
            raise ValueError(f"DualARConfig: unknown keys {unknown}; valid keys are {sorted(names)}")
        kwargs = {k: v for k, v in data.items() if k in names}
        if kwargs.get("codebook_sizes") is not None:
            kwargs["codebook_sizes"] = list(kwargs["codebook_sizes"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the model fields (round-trips through `from_dict`)."""
        return dataclasses.asdict(self)

    def validate(self) -> DualARConfig:
        """Check the sizes are complete and consistent; returns self. Raises ValueError naming the field."""
        missing = [k for k in TOKENIZER_FIELDS if getattr(self, k) is None]
        if missing:
            raise ValueError(
                f"DualARConfig: {missing} are None; fill them from the tokenizer "
                "(vocab_size=len(tok), semantic_start=tok.semantic_start, num_semantic=codec.codebook_sizes[0])"
            )
        positive = [
            "vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "max_seq_len",
            "num_codebooks", "codebook_size", "num_semantic", "fast_dim", "fast_n_layers", "fast_n_heads",
            "fast_n_kv_heads", "fast_head_dim", "fast_ffn_dim",
        ]  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"DualARConfig.{name} must be a positive int, got {value!r}")
        for prefix in ("", "fast_"):
            heads, kv = getattr(self, prefix + "n_heads"), getattr(self, prefix + "n_kv_heads")
            if heads % kv:
                raise ValueError(
                    f"DualARConfig.{prefix}n_heads={heads} must be a multiple of {prefix}n_kv_heads={kv}"
                )
            hd = getattr(self, prefix + "head_dim")
            if hd % 2:
                raise ValueError(f"DualARConfig.{prefix}head_dim={hd} must be even (RoPE rotates pairs)")
        if self.semantic_start < 0 or self.semantic_start + self.num_semantic > self.vocab_size:
            raise ValueError(
                f"DualARConfig: semantic range [{self.semantic_start}, {self.semantic_start + self.num_semantic}) "
                f"does not fit in vocab_size={self.vocab_size}"
            )
        if self.num_semantic > self.codebook_size:
            raise ValueError(
                f"DualARConfig.num_semantic={self.num_semantic} exceeds codebook_size={self.codebook_size} "
                "(the fast vocabulary must hold codebook 0)"
            )
        if self.codebook_sizes is not None:
            if len(self.codebook_sizes) != self.num_codebooks:
                raise ValueError(
                    f"DualARConfig.codebook_sizes has {len(self.codebook_sizes)} entries, "
                    f"num_codebooks={self.num_codebooks}"
                )
            if max(self.codebook_sizes) > self.codebook_size or min(self.codebook_sizes) <= 0:
                raise ValueError(
                    f"DualARConfig.codebook_sizes={self.codebook_sizes} must be in [1, codebook_size={self.codebook_size}]"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DualARConfig.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.audio_input_dropout < 1.0:
            raise ValueError(
                f"DualARConfig.audio_input_dropout must be in [0, 1), got {self.audio_input_dropout}"
            )
        if self.rope_base <= 0 or self.norm_eps <= 0:
            raise ValueError("DualARConfig.rope_base and norm_eps must be > 0")
        return self
