"""A tiny LJSpeech-style folder rendered with espeak-ng (22.05 kHz), the "your own data" a new user brings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SENTENCES = [
    "The cat sat on the mat.",
    "A small boat crossed the river.",
    "We walked home in the rain.",
    "She opened the green door.",
    "The old clock struck nine.",
    "Bring me the blue cup, please.",
    "He reads a book every night.",
    "The wind moved the tall trees.",
]


def make_ljspeech_folder(root: Path, n: int = len(SENTENCES)) -> Path:
    """``root/metadata.csv`` (``id|text|normalized_text``) + ``root/wavs/ID.wav``; skips without espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(SENTENCES[:n]):
        uid = f"own_{i:03d}"
        subprocess.run(["espeak-ng", "-w", str(root / "wavs" / f"{uid}.wav"), text], check=True)
        lines.append(f"{uid}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def make_fish_folder(lj: Path, root: Path) -> Path:
    """The same clips in fish-speech layout: ``root/SPEAKER/NAME.wav`` + ``NAME.lab``."""
    spk = root / "me"
    spk.mkdir(parents=True, exist_ok=True)
    for line in (lj / "metadata.csv").read_text(encoding="utf-8").splitlines():
        uid, text = line.split("|")[:2]
        shutil.copy(lj / "wavs" / f"{uid}.wav", spk / f"{uid}.wav")
        (spk / f"{uid}.lab").write_text(text, encoding="utf-8")
    return root
