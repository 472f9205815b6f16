"""Speaker similarity (SIM): cosine of speaker embeddings of generated vs reference audio."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from s2train.eval.speaker import SpeakerEncoder

__all__ = ["cosine_similarity", "sim_report", "speaker_similarity"]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two embeddings ``[D]``; 0.0 when either is a zero vector."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"cosine_similarity: embedding shapes differ {a.shape} vs {b.shape}")
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else 0.0


def speaker_similarity(
    encoder: SpeakerEncoder, generated: np.ndarray, gen_rate: int, reference: np.ndarray, ref_rate: int
) -> float:
    """SIM of one pair: ``cos(embed(generated), embed(reference))`` with both ``[S]`` waveforms."""
    return cosine_similarity(encoder.embed(generated, gen_rate), encoder.embed(reference, ref_rate))


def sim_report(values: Sequence[float | None]) -> dict:
    """Mean / std / count of per-utterance SIM values (None entries are skipped)."""
    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if vals.size == 0:
        return {"sim": float("nan"), "sim_std": float("nan"), "n": 0}
    return {"sim": float(vals.mean()), "sim_std": float(vals.std()), "n": int(vals.size)}
