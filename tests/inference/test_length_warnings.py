"""Generation that runs into the length cap says so; text in a script the tokenizer never saw is warned about."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from s2train.inference.tts import TTS
from s2train.text.coverage import unseen_characters
from tests.inference.test_inference_tts import parts  # noqa: F401 (the tiny model/tokenizer/codec fixture)


@pytest.fixture
def tts(parts):  # noqa: F811
    return TTS(*parts, max_seconds=0.01)


@pytest.mark.parametrize("stopped", [False, True])
def test_stopped_at_cap_flag(tts, monkeypatch, stopped):
    real = tts.engine.generate

    def generate(*args, **kwargs):
        res = real(*args, **kwargs)
        res.stopped = [stopped]
        return res

    monkeypatch.setattr(tts.engine, "generate", generate)
    tts.synthesize("hello there", seed=0, do_sample=False)
    assert tts.last_stats["stopped_at_cap"] is (not stopped)
    assert tts.last_stats["max_frames"] == int(0.01 * tts.codec.frame_rate)


def test_stream_reports_the_cap(tts):
    list(tts.stream("hello there", seed=0, do_sample=False, chunk_frames=4))
    s = tts.last_stats
    assert s["stopped_at_cap"] == (s["frames_out"] >= s["max_frames"])


def test_unseen_script_warning(tts, caplog):
    assert unseen_characters(tts.tokenizer, "hello there, how are you?") == []
    assert unseen_characters(tts.tokenizer, "hi 你好 😀") == ["你", "好", "😀"]
    with caplog.at_level(logging.WARNING, logger="s2train.inference.tts"):
        tts.synthesize("hello there", seed=0)
        assert "never saw" not in caplog.text
        tts.synthesize("hello 你好 😀", seed=0)
        assert "never saw" in caplog.text and "cjk" in caplog.text and "emoji" in caplog.text
        caplog.clear()
        tts.synthesize("你好", seed=0)  # once per character
        assert "never saw" not in caplog.text


def test_infer_cli_warns_at_cap(parts, tmp_path, monkeypatch, caplog):  # noqa: F811
    from s2train.bundle import export_bundle
    from s2train.codec import save_codec
    from s2train.infer import main as infer_main

    model, tok, codec = parts
    save_codec(codec, tmp_path / "codec")
    export_bundle(model, None, tok, tmp_path / "codec", tmp_path / "bundle")

    def capped(self, text, references=(), seed=None, max_seconds=None, **sampling):
        self.last_stats = {"stopped_at_cap": True, "max_frames": 10}
        return np.zeros(160, np.float32), self.sample_rate

    monkeypatch.setattr(TTS, "synthesize", capped)
    with caplog.at_level(logging.WARNING, logger="s2train.infer"):
        summary = infer_main([f"bundle={tmp_path / 'bundle'}", "text=hi", f"out={tmp_path / 'o.wav'}"])
    assert summary["stopped_at_cap"] is True and "length cap" in caplog.text
