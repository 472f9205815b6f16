"""A synthetic multi-speaker demo corpus rendered with flite and espeak-ng (no downloads).

``python -m s2train.data.demo out=data/demo size=small seed=0`` writes::

    out/wavs/*.wav        16 kHz mono 16-bit PCM
    out/manifest.jsonl    id, path (relative to out/), text, speaker, language, duration, split, kind, tags
    out/hf/               the same rows as a datasets.Dataset (save_to_disk)

Item kinds: ``plain`` (one voice reads a generated sentence), ``tag`` (inline tags such as ``[whisper]``
rendered for real over the tagged span with espeak-ng settings), ``dialog`` (``<|speaker:0|>.. <|speaker:1|>..``,
two voices concatenated), ``foreign`` (es/de/fr/cmn). Tag and foreign items use the espeak-ng voices (flite
has no prosody controls); each tag item re-reads a sentence its speaker also reads plainly, so the untagged
baseline is in the corpus. The tag table is :data:`TAG_FAMILIES`; the espeak-ng settings per family are in
``_espeak_args`` (whisper variant, amplitude x3 / x0.25, rate x2 / x0.5, pitch 95 / 5, SSML strong
emphasis, 0.8 s silence before a ``[pause]`` span). Splits are by sentence (a sentence has the same split
for every speaker); every item of :data:`HELDOUT_SPEAKER` has split ``heldout``. The same seed gives a
byte-identical ``manifest.jsonl``; finished wavs are reused, so an interrupted build resumes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from tqdm.auto import tqdm

from s2train.data.audio import save_audio
from s2train.data.manifest import ManifestItem, write_manifest
from s2train.data.text_source import (
    TAG_FAMILIES,
    SentenceGenerator,
    foreign_sentences,
    insert_tag,
    split_tagged,
)

__all__ = ["HELDOUT_SPEAKER", "SIZES", "TAG_FAMILIES", "VOICES", "build_demo_corpus", "main"]

log = logging.getLogger(__name__)

#: The flite voice kept out of every training split (all its items have split ``heldout``).
HELDOUT_SPEAKER = "awb"

# ----------------------------------------------------------------------------------------------- engines

#: Output rate of every demo wav.
SAMPLE_RATE = 16000
#: espeak-ng amplitude for untagged speech; low enough that ``[loud]`` can rise ~9 dB without clipping.
_BASE_AMPLITUDE = 60
_APT_HINT = "sudo apt-get install -y flite espeak-ng   (Debian/Ubuntu packages: flite, espeak-ng)"


@dataclass(frozen=True)
class Voice:
    """A demo speaker.

    Attributes:
        name: speaker id in the manifest.
        engine: ``flite`` or ``espeak``.
        voice: flite voice (``slt``) or espeak-ng language (``en-us``).
        variant: espeak-ng variant (``f3``, ``m7``): the timbre, kept across languages.
        speed: espeak-ng words per minute.
        pitch: espeak-ng base pitch 0..99.
    """

    name: str
    engine: str
    voice: str
    variant: str = ""
    speed: int = 175
    pitch: int = 50

    @property
    def female(self) -> bool:
        return self.variant.startswith("f")

    def with_language(self, lang: str) -> Voice:
        return replace(self, voice=lang)


VOICES: tuple[Voice, ...] = (
    Voice("slt", "flite", "slt"),
    Voice("rms", "flite", "rms"),
    Voice("awb", "flite", "awb"),
    Voice("kal16", "flite", "kal16"),
    Voice("espeak_us_m3", "espeak", "en-us", "m3", speed=165, pitch=55),
    Voice("espeak_gb_f3", "espeak", "en", "f3", speed=175, pitch=60),
    Voice("espeak_us_f4", "espeak", "en-us", "f4", speed=185, pitch=55),
    Voice("espeak_sc_m7", "espeak", "en-gb-scotland", "m7", speed=155, pitch=48),
    Voice("espeak_rp_f2", "espeak", "en-gb-x-rp", "f2", speed=170, pitch=65),
)


def require_engines(engines: set[str]) -> None:
    """Raise a RuntimeError naming the Debian packages if flite / espeak-ng are missing."""
    binaries = {"flite": "flite", "espeak": "espeak-ng"}
    missing = [binaries[e] for e in sorted(engines) if shutil.which(binaries[e]) is None]
    if missing:
        raise RuntimeError(f"the demo corpus needs {', '.join(missing)} on PATH; install with: {_APT_HINT}")


def _espeak_args(voice: Voice, family: str | None) -> tuple[list[str], str | None]:
    """espeak-ng flags for a span under a tag family, and an SSML wrapper (or None)."""
    variant = ("whisperf" if voice.female else "whisper") if family == "whisper" else voice.variant
    speed, pitch, amp, ssml = voice.speed, voice.pitch, _BASE_AMPLITUDE, None
    if family == "loud":
        amp = 3 * _BASE_AMPLITUDE
    elif family == "soft":
        amp = _BASE_AMPLITUDE // 4
    elif family == "fast":
        speed = min(2 * voice.speed, 450)
    elif family == "slow":
        speed = max(voice.speed // 2, 80)
    elif family == "high_pitch":
        pitch = 95
    elif family == "low_pitch":
        pitch = 5
    elif family == "emphasis":
        ssml = '<speak><emphasis level="strong">{}</emphasis></speak>'
    v = f"{voice.voice}+{variant}" if variant else voice.voice
    return ["-v", v, "-s", str(speed), "-p", str(pitch), "-a", str(amp), "-b", "1"], ssml


def _synth(voice: Voice, text: str, family: str | None) -> np.ndarray:
    """Render one span to float32 mono at SAMPLE_RATE: [S]."""
    if voice.engine == "flite":
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "x.wav"
            subprocess.run(
                ["flite", "-voice", voice.voice, "-t", text, "-o", str(out)], check=True, capture_output=True
            )
            data, rate = sf.read(str(out), dtype="float32")
    else:
        args, ssml = _espeak_args(voice, family)
        if ssml:
            args, text = ["-m", *args], ssml.format(text.replace("&", "and").replace("<", " "))
        res = subprocess.run(["espeak-ng", *args, "--stdout", text], check=True, capture_output=True)
        data, rate = sf.read(io.BytesIO(res.stdout), dtype="float32")
    if rate != SAMPLE_RATE:
        data = _resampler(rate)(torch.from_numpy(data)[None])[0].numpy()
    return _trim(data)


@cache
def _resampler(rate: int) -> torchaudio.transforms.Resample:
    # built once per rate: computing the windowed-sinc kernel dominates a per-call resample
    return torchaudio.transforms.Resample(rate, SAMPLE_RATE)


def _trim(x: np.ndarray, margin_s: float = 0.03) -> np.ndarray:
    """Cut leading/trailing silence (engines pad differently) so joins and durations are comparable."""
    if x.size == 0:
        return x
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    if loud.size == 0:
        return x[:0]
    m = int(margin_s * SAMPLE_RATE)
    return x[max(loud[0] - m, 0) : loud[-1] + m + 1]


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def spec_hash(segments: list[tuple[Voice, str, str | None]], turn_gap: bool) -> str:
    """Short content hash of what an item renders (names its wav, so stale files are never reused)."""
    key = repr([(v, t, f) for v, t, f in segments]) + repr(turn_gap)
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]


def render_job(path: Path, segments: list[tuple[Voice, str, str | None]], turn_gap: bool) -> int:
    """Render segments in order and write ``path`` atomically; returns 0 if it already existed, else 1.

    ``[pause]`` spans get 0.8 s of silence before them; dialog turns are 0.35 s apart, spans 0.06 s.
    """
    if path.exists():
        return 0
    parts = [_silence(0.1)]
    for i, (voice, text, family) in enumerate(segments):
        if i:
            parts.append(_silence(0.35 if turn_gap else 0.06))
        if family == "pause":
            parts.append(_silence(0.8))
        if text:
            parts.append(_synth(voice, text, family))
    parts.append(_silence(0.1))
    tmp = path.with_suffix(".tmp.wav")
    save_audio(tmp, np.concatenate(parts), SAMPLE_RATE)
    os.replace(tmp, path)
    return 1


@dataclass(frozen=True)
class CorpusSize:
    """How much to render. Plain items = (speakers) x ``per_speaker``."""

    sentences: int
    per_speaker: int
    tags_per_family: int
    multi_tag: int
    dialogs: int
    foreign_per_lang: int


SIZES: dict[str, CorpusSize] = {
    "tiny": CorpusSize(
        sentences=10, per_speaker=2, tags_per_family=1, multi_tag=1, dialogs=2, foreign_per_lang=1
    ),
    "small": CorpusSize(
        sentences=200, per_speaker=30, tags_per_family=8, multi_tag=10, dialogs=24, foreign_per_lang=4
    ),
    "large": CorpusSize(
        sentences=2000, per_speaker=300, tags_per_family=60, multi_tag=60, dialogs=200, foreign_per_lang=8
    ),
}


@dataclass
class _Job:
    item: ManifestItem
    segments: list[tuple[Voice, str, str | None]]  # (voice, text, tag family) rendered in order
    turn_gap: bool = False  # dialog: longer gap between segments (turns)


def _split_sentences(sentences: list[str]) -> dict[str, str]:
    n = len(sentences)
    n_eval = max(1, round(0.1 * n))
    return {
        s: ("val" if i < n_eval else "test" if i < 2 * n_eval else "train") for i, s in enumerate(sentences)
    }


def _plan(size: CorpusSize, seed: int, voices: list[Voice]) -> list[_Job]:
    """Decide every item (text, voices, split) without rendering anything."""
    rng = random.Random(seed)
    pool = SentenceGenerator(seed).unique(size.sentences)
    split_of = _split_sentences(pool)
    order = pool[:]
    rng.shuffle(order)
    jobs: list[_Job] = []
    read_by: dict[str, list[str]] = {}

    # plain: speaker k reads a rotating window of the shuffled pool, so every sentence gets read
    for k, v in enumerate(voices):
        read_by[v.name] = [order[(k * size.per_speaker + j) % len(order)] for j in range(size.per_speaker)]
        for j, s in enumerate(read_by[v.name]):
            split = "heldout" if v.name == HELDOUT_SPEAKER else split_of[s]
            item = ManifestItem(f"plain_{v.name}_{j:05d}", "", s, v.name, "en", 0.0, split, {"kind": "plain"})
            jobs.append(_Job(item, [(v, s, None)]))

    trainable = [v for v in voices if v.name != HELDOUT_SPEAKER]
    espeak = [v for v in trainable if v.engine == "espeak"]
    if not espeak:
        log.warning("no espeak-ng voice selected: skipping tag and foreign items")
    # tag: an espeak voice re-reads one of its own plain sentences with a tag, so the untagged baseline exists
    n_tag = 0
    for fam in TAG_FAMILIES.values() if espeak else ():
        for j in range(size.tags_per_family):
            v = espeak[n_tag % len(espeak)]
            base = rng.choice(read_by[v.name])
            surface = fam.synonyms[0] if j == 0 else rng.choice(fam.synonyms)
            text = insert_tag(base, surface, rng, fam.name)
            item = ManifestItem(
                f"tag_{v.name}_{n_tag:05d}", "", text, v.name, "en", 0.0, split_of[base],
                {"kind": "tag", "tags": [fam.name]},
            )  # fmt: skip
            jobs.append(_Job(item, _tag_segments(v, text)))
            n_tag += 1
    for _ in range(size.multi_tag if espeak else 0):
        v = espeak[n_tag % len(espeak)]
        base = rng.choice(read_by[v.name])
        words = base.split()
        # a leading [pause] would only add leading silence, and emphasis over a long span shows no prominence
        f1, f2 = rng.sample(sorted(set(TAG_FAMILIES) - {"pause", "emphasis"}), 2)
        # the first tag needs a few words of its own: a one-word span is too short to measure its effect
        half = max(1, len(words) // 2)
        cut = rng.randint(min(3, half), half)
        text = " ".join(
            [f"[{rng.choice(TAG_FAMILIES[f1].synonyms)}]"] + words[:cut]
            + [f"[{rng.choice(TAG_FAMILIES[f2].synonyms)}]"] + words[cut:]
        )  # fmt: skip
        item = ManifestItem(
            f"tag_{v.name}_{n_tag:05d}", "", text, v.name, "en", 0.0, split_of[base],
            {"kind": "tag", "tags": [f1, f2]},
        )  # fmt: skip
        jobs.append(_Job(item, _tag_segments(v, text)))
        n_tag += 1

    # dialog: two different voices, both sentences from the same split
    by_split: dict[str, list[str]] = {}
    for s in pool:
        by_split.setdefault(split_of[s], []).append(s)
    for j in range(size.dialogs if len(trainable) >= 2 else 0):
        a, b = rng.sample(trainable, 2)
        s0 = rng.choice(pool)
        s1 = rng.choice(by_split[split_of[s0]])
        text = f"<|speaker:0|>{s0} <|speaker:1|>{s1}"
        item = ManifestItem(
            f"dialog_{j:05d}", "", text, f"dialog:{a.name}+{b.name}", "en", 0.0, split_of[s0],
            {"kind": "dialog"},
        )  # fmt: skip
        jobs.append(_Job(item, [(a, s0, None), (b, s1, None)], turn_gap=True))

    # foreign: espeak voices keep their variant (same timbre) in another language
    n_for = 0
    for lang, sentences in foreign_sentences().items() if espeak else ():
        for j, s in enumerate(sentences[: size.foreign_per_lang]):
            split = {2: "val", 3: "test"}.get(j % 4, "train")  # small/large get val+test per language
            v = espeak[n_for % len(espeak)]
            item = ManifestItem(
                f"foreign_{lang}_{v.name}_{j:05d}", "", s, v.name, lang, 0.0, split, {"kind": "foreign"}
            )
            jobs.append(_Job(item, [(v.with_language(lang), s, None)]))
            n_for += 1
    for job in jobs:
        job.item.extra.setdefault("tags", [])
    return jobs


def _tag_segments(voice: Voice, text: str) -> list[tuple[Voice, str, str | None]]:
    return [(voice, span.text, span.family) for span in split_tagged(text)]


def build_demo_corpus(
    out_dir: str | Path, size: str = "small", seed: int = 0, voices: list[str] | None = None
) -> Path:
    """Render the demo corpus (resumable) and return the path of its ``manifest.jsonl``.

    Args:
        out_dir: output folder (created).
        size: ``tiny`` (tests, seconds), ``small`` (default, minutes), or ``large``.
        seed: sentence/assignment seed; the same seed gives a byte-identical manifest.
        voices: subset of :data:`VOICES` names (default: all).

    Raises:
        RuntimeError: flite or espeak-ng is not installed (names the Debian packages).
    """
    if size not in SIZES:
        raise ValueError(f"unknown demo corpus size {size!r}; choose one of {sorted(SIZES)}")
    known = {v.name: v for v in VOICES}
    if voices is not None:
        unknown = sorted(set(voices) - known.keys())
        if unknown:
            raise ValueError(f"unknown demo voice(s) {unknown}; available: {sorted(known)}")
    chosen = [v for v in VOICES if voices is None or v.name in voices]
    require_engines({v.engine for v in chosen})
    out_dir = Path(out_dir)
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    jobs = _plan(SIZES[size], seed, chosen)
    rendered = 0
    for job in tqdm(jobs, desc=f"rendering demo corpus ({size})", unit="item", mininterval=1.0):
        # the spec hash in the name means a changed text/voice never reuses a stale file
        path = wav_dir / f"{job.item.id}-{spec_hash(job.segments, job.turn_gap)}.wav"
        job.item.path = str(path.resolve())
        rendered += render_job(path, job.segments, job.turn_gap)
    items = [job.item for job in jobs]
    for item in items:
        item.duration = sf.info(item.path).frames / SAMPLE_RATE
    manifest = write_manifest(items, out_dir / "manifest.jsonl")
    _save_hf(items, out_dir)
    log.info(
        "demo corpus: %d items (%d rendered, %d reused) -> %s",
        len(items),
        rendered,
        len(items) - rendered,
        manifest,
    )
    return manifest


def _save_hf(items: list[ManifestItem], out_dir: Path) -> None:
    from datasets import Dataset

    rows = []
    for item in items:
        row = item.to_row()
        row["path"] = Path(item.path).resolve().relative_to(out_dir.resolve()).as_posix()
        rows.append(row)
    hf_dir = out_dir / "hf"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    Dataset.from_list(rows).save_to_disk(str(hf_dir))


def _parse_args(argv: list[str]) -> dict[str, str]:
    from s2train.cli import exit_on_help

    exit_on_help(argv, __doc__)
    args = {}
    for a in argv:
        if "=" not in a:
            raise SystemExit(f"expected key=value arguments (out=, size=, seed=, voices=), got {a!r}")
        k, v = a.split("=", 1)
        args[k.lstrip("-")] = v
    unknown = set(args) - {"out", "size", "seed", "voices"}
    if unknown:
        raise SystemExit(f"unknown argument(s) {sorted(unknown)}; expected out=, size=, seed=, voices=")
    return args


def main(argv: list[str] | None = None) -> Path:
    """CLI: ``python -m s2train.data.demo out=data/demo size=small seed=0 [voices=slt,rms,...]``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    voices = args["voices"].split(",") if args.get("voices") else None
    manifest = build_demo_corpus(
        args.get("out", "data/demo"), args.get("size", "small"), int(args.get("seed", 0)), voices
    )
    out = manifest.parent
    print(
        f"demo corpus ({SAMPLE_RATE} Hz): wavs in {out / 'wavs'}, manifest {manifest}, datasets copy {out / 'hf'}"
    )
    return manifest


if __name__ == "__main__":
    main()
