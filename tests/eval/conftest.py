"""Shared fixtures for the eval tests: espeak-ng ground-truth renderings (no network, no model downloads)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I think we should leave before the rain starts.",
    "Please bring the blue folder to the meeting tomorrow.",
    "My sister moved to a small town near the coast.",
    "We can finish the report if everyone helps a little.",
]

# espeak-ng settings that realise each tag family (with, without) on the same text.
FAMILY_FLAGS = {
    "whisper": (["-v", "en-us+whisper"], []),
    "loud": (["-a", "200"], []),
    "soft": (["-a", "30"], []),
    "fast": (["-s", "260"], []),
    "slow": (["-s", "100"], []),
    "high_pitch": (["-p", "85"], []),
    "low_pitch": (["-p", "15"], []),
}

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def espeak(
    text: str, flags: list[str] = (), ssml: bool = False, out: Path | None = None
) -> tuple[np.ndarray, int]:
    """Renders ``text`` with espeak-ng and returns ``(wav [S] float32, sample_rate)``."""
    import tempfile

    flags = list(flags)
    if "-v" not in flags:
        flags = ["-v", "en-us", *flags]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(out) if out is not None else Path(tmp) / "x.wav"
        subprocess.run(["espeak-ng", *flags, *(["-m"] if ssml else []), "-w", str(path), text], check=True)
        wav, sr = sf.read(path, dtype="float32")
    return wav, sr


def render_pair(family: str, text: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Ground-truth (with tag, without tag) renderings of ``text`` for one family."""
    words = text.split()
    mid = len(words) // 2
    if family == "pause":
        with_, sr = espeak(
            " ".join(words[:mid]) + ' <break time="700ms"/> ' + " ".join(words[mid:]), ssml=True
        )
        without, _ = espeak(text, ssml=True)
    elif family == "emphasis":
        marked = " ".join(
            [
                *words[:mid],
                '<emphasis level="strong">',
                *words[mid : mid + 2],
                "</emphasis>",
                *words[mid + 2 :],
            ]
        )
        with_, sr = espeak(marked, ssml=True)
        without, _ = espeak(text, ssml=True)
    else:
        flags_with, flags_without = FAMILY_FLAGS[family]
        with_, sr = espeak(text, flags_with)
        without, _ = espeak(text, flags_without)
    return with_, without, sr


@pytest.fixture(scope="session")
def espeak_corpus(tmp_path_factory) -> Path:
    """A tiny demo-style manifest (2 speakers = 2 espeak voices) with test/heldout/tag/dialogue items."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "wavs").mkdir()
    import json

    voices = {"spk_a": "en-us", "spk_b": "en-us+f3"}
    rows = []
    plan = [
        ("spk_a", SENTENCES[0], "train"),
        ("spk_a", SENTENCES[1], "test"),
        ("spk_a", SENTENCES[2], "test"),
        ("spk_b", SENTENCES[3], "heldout"),
        ("spk_b", SENTENCES[4], "heldout"),
        ("spk_a", "[whisper] " + SENTENCES[1], "test"),
        ("spk_a", "<|speaker:0|>Hello there. <|speaker:1|>Hi, how are you?", "test"),
    ]
    for i, (spk, text, split) in enumerate(plan):
        voice = voices[spk].split("+")[0] + "+whisper" if "[whisper]" in text else voices[spk]
        flags = ["-v", voice]
        spoken = text.replace("[whisper] ", "").replace("<|speaker:0|>", "").replace("<|speaker:1|>", " ")
        wav_path = root / "wavs" / f"utt{i}.wav"
        wav, sr = espeak(spoken, flags, out=wav_path)
        rows.append(
            {
                "id": f"utt{i}",
                "path": f"wavs/utt{i}.wav",
                "text": text,
                "speaker": spk,
                "language": "en",
                "duration": len(wav) / sr,
                "split": split,
            }
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
