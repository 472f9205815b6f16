"""load_audio / save_audio and every bad-file kind, plus manifest validation over them."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from s2train.data.audio import BadAudioError, load_audio, save_audio
from s2train.data.manifest import BadManifestError, ManifestItem, validate_items

SR = 16000


def _tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.fixture
def audio_dir(tmp_path):
    """One file of every kind: good, resampled, stereo, and each bad kind."""
    d = tmp_path
    sf.write(d / "good.wav", _tone(0.5, SR), SR, subtype="PCM_16")
    sf.write(d / "rate8k.wav", _tone(0.5, 8000), 8000, subtype="PCM_16")
    sf.write(d / "rate48k.wav", _tone(0.5, 48000), 48000, subtype="PCM_16")
    stereo = _tone(0.5, SR, channels=2)
    stereo[:, 1] = 0.0  # one silent channel: the mono mix must be exactly half the left channel
    sf.write(d / "stereo.wav", stereo, SR, subtype="PCM_16")
    (d / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    full = (d / "good.wav").read_bytes()
    (d / "truncated.wav").write_bytes(full[: len(full) // 2])
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "header_only.wav", np.zeros(0, np.float32), SR, subtype="PCM_16")
    sf.write(d / "zeros.wav", np.zeros(SR // 2, np.float32), SR, subtype="PCM_16")
    nan = _tone(0.5, SR)
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(d / "short.wav", _tone(0.01, SR), SR, subtype="PCM_16")
    return d


def test_good_file_shape_dtype(audio_dir):
    wav = load_audio(audio_dir / "good.wav", SR)
    assert wav.shape == (1, 8000) and wav.dtype == torch.float32
    assert 0.29 < wav.abs().max() < 0.31


@pytest.mark.parametrize("name", ["rate8k.wav", "rate48k.wav"])
def test_other_rates_are_resampled(audio_dir, name):
    wav = load_audio(audio_dir / name, SR)
    assert abs(wav.shape[-1] - 8000) <= 1
    # still a 440 Hz tone after resampling
    spec = torch.fft.rfft(wav[0]).abs()
    assert abs(int(spec.argmax()) * SR / wav.shape[-1] - 440) < 5


def test_stereo_is_mixed_down(audio_dir):
    wav = load_audio(audio_dir / "stereo.wav", SR)
    mono = load_audio(audio_dir / "good.wav", SR)
    assert wav.shape == (1, 8000)
    torch.testing.assert_close(wav, mono / 2, atol=1e-4, rtol=0)


def test_max_seconds_truncates(audio_dir):
    assert load_audio(audio_dir / "good.wav", SR, max_seconds=0.25).shape == (1, 4000)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.wav", "missing"),
        ("corrupt.wav", "corrupt"),
        ("truncated.wav", "corrupt"),
        ("empty.wav", "empty"),
        ("header_only.wav", "empty"),
        ("zeros.wav", "silent"),
        ("nan.wav", "non_finite"),
        ("short.wav", "too_short"),
    ],
)
def test_bad_files_raise_with_reason(audio_dir, name, reason):
    with pytest.raises(BadAudioError) as e:
        load_audio(audio_dir / name, SR)
    assert e.value.reason == reason
    assert name in str(e.value)


def test_save_roundtrip_is_16bit(tmp_path):
    x = torch.from_numpy(_tone(0.2, SR))[None]
    path = save_audio(tmp_path / "sub" / "x.wav", x, SR)
    assert sf.info(str(path)).subtype == "PCM_16"
    torch.testing.assert_close(load_audio(path, SR), x, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="NaN"):
        save_audio(tmp_path / "bad.wav", torch.full((1, 10), float("nan")), SR)


def _items(audio_dir):
    names = ["good", "rate8k", "rate48k", "stereo", "corrupt", "truncated", "empty", "header_only", "zeros",
             "nan", "short", "missing"]  # fmt: skip
    items = [ManifestItem(n, str(audio_dir / f"{n}.wav"), f"text of {n}", "spk") for n in names]
    items.append(ManifestItem("blank_text", str(audio_dir / "good.wav"), "   ", "spk"))
    return items


def test_validate_non_strict_skips_and_counts(audio_dir, caplog):
    good, report = validate_items(_items(audio_dir), SR)
    assert [it.id for it in good] == ["good", "rate8k", "rate48k", "stereo"]
    assert all(abs(it.duration - 0.5) < 1e-3 for it in good)
    assert report.counts == {
        "corrupt": 2, "empty": 2, "empty_text": 1, "missing": 1, "non_finite": 1, "silent": 1, "too_short": 1,
    }  # fmt: skip
    assert report.summary().startswith("9/13 items rejected")
    assert sum("skipping" in r.message for r in caplog.records) == 9


def test_validate_strict_raises_one_listing_error(audio_dir):
    with pytest.raises(BadManifestError) as e:
        validate_items(_items(audio_dir), SR, strict=True)
    msg = str(e.value)
    for name in [
        "corrupt",
        "truncated",
        "empty",
        "header_only",
        "zeros",
        "nan",
        "short",
        "missing",
        "blank_text",
    ]:
        assert f"  {name} [" in msg
    assert len(e.value.report) == 9


def test_validate_max_seconds(audio_dir):
    items = _items(audio_dir)[:1]
    good, report = validate_items(items, SR, max_seconds=0.4)
    assert not good and report.counts == {"too_long": 1}
