"""Fixtures for the reliability tests: a corpus of broken audio/transcripts, a tiny codec, a loss recorder.

The broken corpus is written once per session with numpy/soundfile (no TTS rendering), so every test that
uses it stays in the seconds range. `BAD_CASES` is the single list of what is broken and how the data layer
must react; `docs/reliability.md` reproduces it as a table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from pytorch_lightning import Callback

from s2train.data.manifest import ManifestItem, write_manifest

ROOT = Path(__file__).resolve().parents[2]
SR = 16000

# id -> expected outcome of AudioDataModule validation: a BadAudioError reason, or "ok".
BAD_CASES = {
    "truncated": "corrupt",  # RIFF data chunk claims more bytes than the file holds
    "garbage": "corrupt",  # random bytes with a .wav name
    "zero_bytes": "empty",  # 0-byte file
    "header_only": "empty",  # valid wav header, no samples
    "all_zero": "silent",  # digital silence
    "nan_samples": "non_finite",  # float wav with NaN samples
    "too_short": "too_short",  # 10 ms
    "missing": "missing",  # path points nowhere
    "empty_text": "empty_text",  # "" transcript
    "blank_text": "empty_text",  # whitespace/newline transcript
    "rate_8k": "ok",  # resampled up
    "rate_48k": "ok",  # resampled down
    "stereo": "ok",  # mixed down to mono
    "ten_minutes": "ok",  # accepted (max_seconds=null); crops read only the needed frames
    "arabic": "ok",  # unseen script in the transcript
    "devanagari": "ok",
    "emoji": "ok",
    "unknown_tag": "ok",  # "[sarcastic robot]" is plain text to the tokenizer
}
TEXTS = {
    "arabic": "مرحبا بالعالم، هذا اختبار.",
    "devanagari": "नमस्ते दुनिया, यह एक परीक्षण है।",
    "emoji": "hello 🤖🔥 world 👍🏽",
    "unknown_tag": "[sarcastic robot] oh great, another test.",
    "empty_text": "",
    "blank_text": "  \n\t ",
}
NUM_GOOD = 8


def tone(seconds: float, sr: int = SR, freq: float = 220.0, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A tone plus noise, [S] or [S, C] float32 (an audible, learnable clip)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    x = x.astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def _write_bad(folder: Path, name: str) -> Path:
    path = folder / f"{name}.wav"
    if name == "truncated":
        sf.write(path, tone(0.5), SR, subtype="PCM_16")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif name == "garbage":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif name == "zero_bytes":
        path.write_bytes(b"")
    elif name == "header_only":
        sf.write(path, np.zeros(0, np.float32), SR, subtype="PCM_16")
    elif name == "all_zero":
        sf.write(path, np.zeros(SR // 2, np.float32), SR, subtype="PCM_16")
    elif name == "nan_samples":
        x = tone(0.5)
        x[100:200] = np.nan
        sf.write(path, x, SR, subtype="FLOAT")
    elif name == "too_short":
        sf.write(path, tone(0.01), SR, subtype="PCM_16")
    elif name == "missing":
        pass
    elif name == "rate_8k":
        sf.write(path, tone(0.5, sr=8000), 8000, subtype="PCM_16")
    elif name == "rate_48k":
        sf.write(path, tone(0.5, sr=48000), 48000, subtype="PCM_16")
    elif name == "stereo":
        sf.write(path, tone(0.5, channels=2), SR, subtype="PCM_16")
    elif name == "ten_minutes":
        # Low-amplitude noise written in blocks: ~19 MB of PCM_16, about a second to write.
        rng = np.random.default_rng(2)
        with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
            for _ in range(60):
                f.write((0.01 * rng.standard_normal(SR * 10)).astype(np.float32))
    else:
        sf.write(path, tone(0.5, seed=sum(map(ord, name))), SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory) -> Path:
    """Manifest mixing NUM_GOOD good train items, 2 good val items and every case in BAD_CASES (split train)."""
    folder = tmp_path_factory.mktemp("bad_corpus")
    wavs = folder / "wavs"
    wavs.mkdir()
    items = []
    for i in range(NUM_GOOD + 2):
        path = wavs / f"good{i}.wav"
        sf.write(path, tone(0.5, freq=150 + 40 * i, seed=i), SR, subtype="PCM_16")
        split = "val" if i >= NUM_GOOD else "train"
        items.append(
            ManifestItem(f"good{i}", str(path), f"good clip number {i}.", f"spk{i % 2}", split=split)
        )
    for name in BAD_CASES:
        path = _write_bad(wavs, name)
        text = TEXTS.get(name, f"this is the {name.replace('_', ' ')} clip.")
        items.append(ManifestItem(name, str(path), text, "spk0", split="train"))
    return write_manifest(items, folder / "manifest.jsonl")


@pytest.fixture(scope="session")
def tiny_codec_dir(tmp_path_factory) -> Path:
    """A randomly initialised `configs/codec/tiny.yaml` codec saved with `save_codec`."""
    from s2train.codec import build_codec, save_codec

    torch.manual_seed(0)
    cfg = yaml.safe_load((ROOT / "configs" / "codec" / "tiny.yaml").read_text())
    return Path(save_codec(build_codec(cfg).eval(), tmp_path_factory.mktemp("codec") / "tiny"))


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Single-threaded tiny models (see tests/conftest.py::one_thread)."""


class LossRecorder(Callback):
    """Appends `{"step", "epoch", "batch_idx", "loss", "batch"}` per training batch to a JSONL file.

    `batch` is a cheap fingerprint of the batch contents, so a resumed run can be checked for replaying
    the same data, not only the same loss. Used from configs as `+callbacks.recorder._target_=...`.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        key = "wav" if "wav" in batch else "codes"
        row = {
            "step": int(trainer.global_step),
            "epoch": int(trainer.current_epoch),
            "batch_idx": int(batch_idx),
            "loss": float(loss),
            "batch": float(batch[key].double().sum()),
            "rank": int(trainer.global_rank),
        }
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def read_losses(path: Path, rank: int = 0) -> list[dict]:
    """Rows written by LossRecorder for one rank."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["rank"] == rank]


def recorder_overrides(path: Path) -> list[str]:
    """Hydra overrides that add a LossRecorder writing to `path`."""
    return [
        "+callbacks.recorder._target_=tests.reliability.conftest.LossRecorder",
        f"+callbacks.recorder.path={path}",
    ]


# Small discriminator/mel settings that keep a codec recipe step well under a second on CPU.
FAST_CODEC = [
    "codec=tiny",
    "data.crop_seconds=0.05",
    "module.discriminator.periods=[2,3]",
    "module.discriminator.period_channels=[4,8]",
    "module.discriminator.spec_channels=4",
    "module.discriminator.stft_ffts=[256]",
    "module.discriminator.complex_ffts=[256]",
    "module.mel.window_lengths=[32,64,128]",
    "module.mel.n_mels=[5,10,20]",
    "module.sample_every_n_steps=0",
]
