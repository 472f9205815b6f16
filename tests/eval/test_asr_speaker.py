"""Real judges on espeak-ng clips: bundled Whisper tiny.en and resemblyzer (offline, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s2train.eval.asr import FasterWhisperASR, TransformersWhisperASR, build_asr, prepare_wav
from s2train.eval.metrics.sim import cosine_similarity, sim_report, speaker_similarity
from s2train.eval.metrics.wer import wer_report
from s2train.eval.speaker import ResemblyzerEncoder, WavLMECAPAEncoder, build_speaker_encoder

from .conftest import SENTENCES, espeak, needs_espeak


def test_prepare_wav_resamples_and_mixes():
    stereo = np.ones((2, 22050), np.float32)
    out = prepare_wav(stereo, 22050)
    assert out.shape == (16000,) and out.dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        prepare_wav(np.zeros((1, 2, 3)), 16000)


@needs_espeak
def test_bundled_whisper_transcribes_espeak(record_property):
    asr = build_asr({"model": "bundled-tiny.en", "cpu_threads": 2})
    (wav1, sr), (wav2, _) = espeak(SENTENCES[1]), espeak(SENTENCES[2])
    hyps = asr.transcribe([wav1, wav2, np.zeros(100, np.float32)], sr)
    rep = wer_report(SENTENCES[1:3], hyps[:2])
    record_property("espeak_wer", rep["wer"])
    print("bundled tiny.en on espeak:", hyps[:2], "WER", rep["wer"])
    assert rep["wer"] < 0.3
    # A wrong reference must score badly: the judge really listens.
    assert wer_report([SENTENCES[3]], hyps[:1])["wer"] > 0.7
    assert hyps[2] == ""  # too short to transcribe


def test_asr_bad_config_errors():
    with pytest.raises(ValueError, match="unknown backend"):
        build_asr({"backend": "nope"})
    with pytest.raises(ValueError, match="unknown keys"):
        build_asr({"modle": "x"})


def test_missing_models_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    with pytest.raises(RuntimeError, match="cannot load model 'large-v3-not-cached'"):
        FasterWhisperASR("large-v3-not-cached").transcribe([noise], 16000)
    with pytest.raises(RuntimeError, match="not a local directory"):
        TransformersWhisperASR("openai/whisper-large-v3").transcribe([np.zeros(16000)], 16000)
    with pytest.raises(ValueError, match="checkpoint_path"):
        build_speaker_encoder({"backend": "wavlm_ecapa"})
    with pytest.raises(FileNotFoundError):
        WavLMECAPAEncoder(tmp_path / "missing.pt")
    (tmp_path / "raw.pth").write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="TorchScript"):
        WavLMECAPAEncoder(tmp_path / "raw.pth")


def test_wavlm_slot_loads_torchscript(tmp_path):
    class Toy(torch.nn.Module):
        def forward(self, wav: torch.Tensor) -> torch.Tensor:  # [1, S] -> [1, 2]
            return torch.stack([wav.abs().mean(-1), wav.pow(2).mean(-1)], dim=-1)

    torch.jit.script(Toy()).save(str(tmp_path / "toy.pt"))
    enc = WavLMECAPAEncoder(tmp_path / "toy.pt")
    emb = enc.embed(np.full(8000, 0.5, np.float32), 8000)
    assert emb.shape == (2,) and emb[0] == pytest.approx(0.5, abs=1e-3)


def test_cosine_and_report():
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert cosine_similarity(np.zeros(2), np.ones(2)) == 0.0
    with pytest.raises(ValueError):
        cosine_similarity(np.ones(2), np.ones(3))
    assert sim_report([0.5, None, 0.7])["sim"] == pytest.approx(0.6)


@needs_espeak
def test_resemblyzer_same_voice_beats_different_voice(record_property):
    enc = ResemblyzerEncoder()
    a1, sr = espeak(SENTENCES[1], ["-v", "en-us"])
    a2, _ = espeak(SENTENCES[2], ["-v", "en-us"])
    b2, _ = espeak(SENTENCES[2], ["-v", "en-us+f3"])
    same = speaker_similarity(enc, a1, sr, a2, sr)
    diff = speaker_similarity(enc, a1, sr, b2, sr)
    record_property("sim_same", same)
    record_property("sim_diff", diff)
    print(f"resemblyzer SIM same voice {same:.3f}, different voice {diff:.3f}")
    assert same > diff + 0.1
    assert enc.embed(np.zeros(16000, np.float32), 16000).sum() == 0.0
