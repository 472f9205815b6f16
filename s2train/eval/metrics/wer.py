"""Word / character error rate with the Seed-TTS-eval conventions.

The headline number is the **mean of per-utterance error rates** (what Seed-TTS-eval reports); the corpus
rate (total edits / total reference words) is reported beside it because it weights long utterances more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import jiwer

from s2train.eval.normalize import normalize_text, uses_cer

__all__ = ["utterance_errors", "wer_report"]

log = logging.getLogger(__name__)


def utterance_errors(ref: str, hyp: str, language: str = "en", numbers: bool = False) -> dict:
    """Scores one hypothesis against one reference.

    Args:
        ref: reference text (markup such as ``[whisper]`` is stripped).
        hyp: ASR transcript.
        language: ``zh``/``cmn`` switch to character error rate.
        numbers: spell out English digits in both texts before scoring.

    Returns:
        ``{"ref_norm", "hyp_norm", "wer", "substitutions", "deletions", "insertions", "hits", "ref_len"}``;
        ``wer`` is None when the normalized reference is empty (nothing to score). An empty hypothesis
        scores exactly 1.0 (every reference unit deleted).
    """
    ref_n = normalize_text(ref, language, numbers)
    hyp_n = normalize_text(hyp, language, numbers)
    row = {"ref_norm": ref_n, "hyp_norm": hyp_n}
    if not ref_n:
        return row | {
            "wer": None,
            "substitutions": 0,
            "deletions": 0,
            "insertions": 0,
            "hits": 0,
            "ref_len": 0,
        }
    if uses_cer(language):
        ref_units, hyp_units = " ".join(ref_n), " ".join(hyp_n)
    else:
        ref_units, hyp_units = ref_n, hyp_n
    n_ref = len(ref_units.split())
    if not hyp_units:
        return row | {
            "wer": 1.0,
            "substitutions": 0,
            "deletions": n_ref,
            "insertions": 0,
            "hits": 0,
            "ref_len": n_ref,
        }
    out = jiwer.process_words(ref_units, hyp_units)
    return row | {
        "wer": float(out.wer),
        "substitutions": int(out.substitutions),
        "deletions": int(out.deletions),
        "insertions": int(out.insertions),
        "hits": int(out.hits),
        "ref_len": n_ref,
    }


def wer_report(
    refs: Sequence[str],
    hyps: Sequence[str],
    language: str | Sequence[str] = "en",
    numbers: bool = False,
) -> dict:
    """Aggregates error rates over a set of utterances.

    Args:
        refs: reference texts, one per utterance.
        hyps: transcripts, same length as ``refs``.
        language: one code for all utterances or one per utterance (CER for ``zh``/``cmn``).
        numbers: spell out English digits before scoring.

    Returns:
        ``{"wer": mean per-utterance rate, "wer_corpus": total edits / total reference units,
        "substitutions", "deletions", "insertions", "hits", "ref_len", "n_utterances", "n_skipped",
        "per_utterance": [row, ...]}``. Utterances whose normalized reference is empty are skipped
        (counted in ``n_skipped``, their row has ``wer=None``).
    """
    if len(refs) != len(hyps):
        raise ValueError(f"wer_report: {len(refs)} references but {len(hyps)} hypotheses")
    langs = [language] * len(refs) if isinstance(language, str) else list(language)
    if len(langs) != len(refs):
        raise ValueError(f"wer_report: {len(refs)} references but {len(langs)} language codes")
    rows = [utterance_errors(r, h, lang, numbers) for r, h, lang in zip(refs, hyps, langs)]
    scored = [r for r in rows if r["wer"] is not None]
    if len(scored) < len(rows):
        log.warning(
            "wer_report: %d utterances have an empty reference and are skipped", len(rows) - len(scored)
        )
    totals = {
        k: sum(r[k] for r in scored) for k in ("substitutions", "deletions", "insertions", "hits", "ref_len")
    }
    edits = totals["substitutions"] + totals["deletions"] + totals["insertions"]
    return {
        "wer": sum(r["wer"] for r in scored) / len(scored) if scored else float("nan"),
        "wer_corpus": edits / totals["ref_len"] if totals["ref_len"] else float("nan"),
        **totals,
        "n_utterances": len(scored),
        "n_skipped": len(rows) - len(scored),
        "per_utterance": rows,
    }
