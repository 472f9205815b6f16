"""Evaluation sets: the demo corpus's held-out prompts and Seed-TTS-eval meta lists.

An :class:`EvalItem` is one prompt to synthesize: the text, the voice prompt (reference audio + transcript,
also the SIM reference) and, when known, the ground-truth audio of the text (used by the ground-truth
"ceiling" run and by codec resynthesis).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from s2train.eval.metrics.tags import tags_in_text
from s2train.eval.normalize import normalize_text, strip_markup

__all__ = [
    "DEMO_SUBSETS",
    "EvalItem",
    "EvalSet",
    "GenerateFn",
    "codec_resynthesis_fn",
    "demo_evalset",
    "ground_truth_generate_fn",
    "read_seedtts_meta",
    "read_wav",
    "tag_pairs",
]

log = logging.getLogger(__name__)

DEMO_SUBSETS = ("test", "heldout", "tags", "dialogue")


@dataclass
class EvalItem:
    """One prompt of an evaluation set.

    Attributes:
        id: unique id (file stem of the generated wav).
        text: text to synthesize; may hold ``[tags]`` and ``<|speaker:i|>`` markers.
        speaker: speaker label (groups the per-speaker WER chart).
        language: language code (``zh``/``cmn`` are scored by CER).
        prompt_text: transcript of ``prompt_wav``.
        prompt_wav: voice-prompt audio path; the SIM reference. None: no prompt (SIM skipped).
        target_wav: ground-truth audio of ``text``, when it exists.
        kind: ``tts`` | ``tag`` | ``dialogue``.
        group: subset name (``test``, ``heldout``, ``tags``, ``dialogue``, ``seedtts``).
        variant: ``with_tag`` / ``without_tag`` for the paired tag check, else "".
        pair_id: id of the tagged item a ``without_tag`` variant belongs to.
    """

    id: str
    text: str
    speaker: str = ""
    language: str = "en"
    prompt_text: str = ""
    prompt_wav: str | None = None
    target_wav: str | None = None
    kind: str = "tts"
    group: str = ""
    variant: str = ""
    pair_id: str | None = None

    def as_dict(self) -> dict:
        """Plain mapping (for JSONL rows)."""
        return dataclasses.asdict(self)


@dataclass
class EvalSet:
    """A named list of items plus what had to be skipped while reading it."""

    name: str
    items: list[EvalItem]
    missing: list[str] = field(default_factory=list)
    # (speaker, normalized text) -> audio path of an untagged rendering, for tag pairs' ground truth.
    plain_audio: dict[tuple[str, str], str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, group: str) -> list[EvalItem]:
        """Items of one group."""
        return [it for it in self.items if it.group == group]

    def sample(self, max_items: int | None, seed: int = 0) -> EvalSet:
        """A deterministic random subset of at most ``max_items`` items per group (order kept)."""
        if not max_items:
            return self
        keep: list[EvalItem] = []
        for group in dict.fromkeys(it.group for it in self.items):
            members = [it for it in self.items if it.group == group]
            if len(members) > max_items:
                pick = np.random.default_rng(seed).choice(len(members), max_items, replace=False)
                members = [members[i] for i in sorted(pick)]
            keep += members
        return dataclasses.replace(self, items=keep)


def _is_dialogue(text: str) -> bool:
    return "<|speaker:1|>" in text.replace(" ", "")


def demo_evalset(
    manifest: str | Path,
    subsets: Sequence[str] = DEMO_SUBSETS,
    max_items: int | None = None,
    seed: int = 0,
    languages: Sequence[str] | None = None,
) -> EvalSet:
    """Builds the held-out evaluation set of a corpus (the demo corpus or your own).

    Groups: ``test`` (held-out sentences, split ``test``), ``heldout`` (every item of the held-out speaker),
    ``tags`` (items whose text has ``[tags]``), ``dialogue`` (texts with ``<|speaker:1|>``). Tag and dialogue
    items are taken from the ``test``/``heldout``/``val`` splits, or from any split when those have none.
    Each item's voice prompt is another plain utterance of the same speaker (training split first).

    A corpus without ``test``/``heldout`` items (LJSpeech, fish-speech, an audiofolder, codes encoded with
    ``val_fraction=`` only) fills the ``test`` group from its ``val`` items, and when it has none of those
    either, from every item, with a warning: those were probably trained on, so the scores are optimistic.
    ``python -m s2train.data.encode ... test_fraction=0.05`` holds out a real ``test`` split.

    Args:
        manifest: any corpus :func:`s2train.data.readers.load_items` reads: a ``manifest.jsonl`` (fields
            ``id, path, text, speaker, language, duration, split``; e.g. ``<codes>/manifest.jsonl`` written
            by ``s2train.data.encode``), a folder holding one, or an LJSpeech / fish-speech / audiofolder /
            saved ``datasets`` folder.
        subsets: which groups to include.
        max_items: cap per group (deterministic sample with ``seed``); None keeps all.
        seed: sampling seed.
        languages: keep only these language codes (e.g. ``["en"]`` for an English-only ASR judge).
    """
    from s2train.data.readers import load_items

    unknown = set(subsets) - set(DEMO_SUBSETS)
    if unknown:
        raise ValueError(f"demo_evalset: unknown subsets {sorted(unknown)} (choose from {DEMO_SUBSETS})")
    rows = load_items(manifest)
    missing = [r.path for r in rows if not Path(r.path).is_file()]
    if missing:
        log.warning("demo_evalset: %d manifest files are missing and skipped", len(missing))
    rows = [r for r in rows if Path(r.path).is_file()]
    if languages:
        rows = [r for r in rows if r.language in set(languages)]

    def plain(r) -> bool:
        return not tags_in_text(r.text) and "<|" not in r.text

    prompts: dict[str, list] = {}
    for r in sorted(rows, key=lambda r: (r.split != "train", r.id)):
        if plain(r):
            prompts.setdefault(r.speaker, []).append(r)
    plain_audio = {(r.speaker, normalize_text(r.text, r.language)): r.path for r in rows if plain(r)}

    def make(r, group: str, kind: str) -> EvalItem:
        # Dialogue speakers are "dialog:a+b": the first turn's voice is the prompt.
        voice = r.speaker.split(":", 1)[1].split("+")[0] if r.speaker.startswith("dialog:") else r.speaker
        prompt = next((p for p in prompts.get(voice, []) if p.id != r.id), None)
        return EvalItem(
            id=r.id,
            text=r.text,
            speaker=r.speaker,
            language=r.language,
            prompt_text=prompt.text if prompt else "",
            prompt_wav=prompt.path if prompt else None,
            target_wav=r.path,
            kind=kind,
            group=group,
        )

    held = [r for r in rows if r.split in ("test", "heldout", "val")]
    test_source = "test"
    if "test" in subsets and not any(r.split in ("test", "heldout") for r in rows):
        test_source = "val" if any(r.split == "val" for r in rows) else None
        log.warning(
            "demo_evalset: %s has no test/heldout split: the test group uses %s",
            manifest,
            "its val items" if test_source else "every item (probably trained on: optimistic scores)",
        )
    items: list[EvalItem] = []
    for group in subsets:
        if group in ("test", "heldout"):
            source = test_source if group == "test" else group
            items += [make(r, group, "tts") for r in rows if source in (None, r.split) and plain(r)]
            continue
        want = (lambda r: bool(tags_in_text(r.text))) if group == "tags" else (lambda r: _is_dialogue(r.text))
        chosen = [r for r in held if want(r)] or [r for r in rows if want(r)]
        items += [make(r, group, "tag" if group == "tags" else "dialogue") for r in chosen]
    if not items:
        raise ValueError(f"demo_evalset: no items for subsets {list(subsets)} in {manifest}")
    return EvalSet("demo", items, missing, plain_audio).sample(max_items, seed)


def tag_pairs(evalset: EvalSet) -> list[EvalItem]:
    """Expands each tagged item into a ``with_tag`` / ``without_tag`` pair for the paired tag check.

    The ``without_tag`` variant has the tags stripped, id ``<id>__notag`` and, as ground truth, an untagged
    rendering of the same text by the same speaker when the corpus has one.
    """
    out: list[EvalItem] = []
    for it in evalset.items:
        if not tags_in_text(it.text):
            continue
        plain_text = strip_markup(it.text)
        out.append(dataclasses.replace(it, variant="with_tag", kind="tag"))
        out.append(
            dataclasses.replace(
                it,
                id=f"{it.id}__notag",
                text=plain_text,
                variant="without_tag",
                pair_id=it.id,
                kind="tag",
                target_wav=evalset.plain_audio.get((it.speaker, normalize_text(plain_text, it.language))),
            )
        )
    return out


def read_seedtts_meta(path: str | Path, language: str = "en", max_items: int | None = None) -> EvalSet:
    """Reads a Seed-TTS-eval meta list (``utt|prompt_text|prompt_wav|target_text[|target_wav]``).

    Paths are relative to the list's folder. Lines whose prompt audio is missing are skipped and listed in
    ``EvalSet.missing``; a missing optional target wav only clears ``target_wav``.

    Args:
        path: the ``meta.lst`` file.
        language: language of the set (``en``; ``zh`` for CER scoring).
        max_items: keep only the first ``max_items`` usable lines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Seed-TTS meta list not found: {path}")
    root = path.resolve().parent
    items: list[EvalItem] = []
    missing: list[str] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("|")
        if len(fields) < 4:
            raise ValueError(
                f"{path}:{lineno}: expected utt|prompt_text|prompt_wav|target_text, got {line!r}"
            )
        utt, prompt_text, prompt_wav, target_text = (f.strip() for f in fields[:4])
        prompt_path = root / prompt_wav
        if not prompt_path.is_file():
            missing.append(str(prompt_path))
            continue
        target = (
            root / fields[4].strip()
            if len(fields) > 4 and fields[4].strip()
            else root / "wavs" / f"{utt}.wav"
        )
        items.append(
            EvalItem(
                id=utt,
                text=target_text,
                speaker=Path(prompt_wav).stem,
                language=language,
                prompt_text=prompt_text,
                prompt_wav=str(prompt_path),
                target_wav=str(target) if target.is_file() else None,
                kind="tts",
                group="seedtts",
            )
        )
        if max_items and len(items) >= max_items:
            break
    if missing:
        log.warning(
            "read_seedtts_meta: %d of %d prompt wavs missing in %s",
            len(missing),
            len(missing) + len(items),
            path,
        )
    return EvalSet(path.parent.name or "seedtts", items, missing)


GenerateFn = Callable[[Sequence[EvalItem], int], Sequence[tuple[np.ndarray, int]]]


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Reads ``path`` as float32 mono ``[S]`` and its sample rate."""
    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return wav.mean(axis=1), int(sr)


def ground_truth_generate_fn(items: Sequence[EvalItem], seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """Returns each item's ground-truth audio (the ceiling run); ``seed`` is ignored."""
    out = []
    for it in items:
        if not it.target_wav:
            raise ValueError(
                f"ground_truth_generate_fn: item {it.id!r} has no ground-truth audio (target_wav)"
            )
        out.append(read_wav(it.target_wav))
    return out


def codec_resynthesis_fn(codec: Any, device: str = "cpu") -> GenerateFn:
    """A generate_fn that encodes and decodes each item's ground truth through ``codec``.

    Args:
        codec: an ``s2train.codec.Codec`` (``sample_rate``, ``encode(wav[B,1,S])``, ``decode(codes[B,K,T])``).
        device: torch device for the round trip.
    """
    import torch

    from s2train.eval.asr import prepare_wav

    codes_seen: list = []

    def generate(items: Sequence[EvalItem], seed: int = 0) -> list[tuple[np.ndarray, int]]:
        out = []
        codes_seen.clear()
        codec.to(device).eval()
        for wav, sr in ground_truth_generate_fn(items, seed):
            x = torch.from_numpy(prepare_wav(wav, sr, codec.sample_rate))[None, None].to(device)
            with torch.inference_mode():
                codes = codec.encode(x)
                y = codec.decode(codes)
                d = codec.delay
                if d:  # a delayed decoder lags by d samples: realign with the original, keep its length
                    y = torch.nn.functional.pad(y[..., d:], (0, d))
            codes_seen.append(codes[0].cpu())
            out.append((y[0, 0].float().cpu().numpy(), int(codec.sample_rate)))
        return out

    def seed_metrics() -> dict[str, float]:
        """Codebook use over every frame of the last call: ``eval/cb{k}_usage`` / ``_perplexity``."""
        from s2train.eval.metrics.audio import codebook_usage

        if not codes_seen:
            return {}
        used, ppl = codebook_usage(torch.cat(codes_seen, dim=-1)[None], list(codec.codebook_sizes))
        res = {f"eval/cb{k}_usage": u for k, u in enumerate(used)}
        res |= {f"eval/cb{k}_perplexity": p for k, p in enumerate(ppl)}
        res["eval/cb_perplexity_min"] = min(ppl)
        return res

    generate.seed_metrics = seed_metrics  # run_suite adds these to the seed's metrics
    return generate
