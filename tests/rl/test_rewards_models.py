"""Rewards with the real eval models (bundled tiny.en ASR, Resemblyzer) on espeak-ng speech."""

import shutil
import subprocess

import pytest
import soundfile as sf
import torch

from s2train.rl.rewards import asr_likelihood_reward, intelligibility_reward, speaker_sim_reward

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def speak(tmp_path, text, voice="en-us", name="a"):
    path = tmp_path / f"{name}.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "130", "-w", str(path), text], check=True, capture_output=True
    )
    wav, sr = sf.read(path, dtype="float32")
    return {
        "wav": torch.from_numpy(wav)[None],
        "sample_rate": sr,
        "codes": torch.zeros(1, 0),
        "num_frames": 0,
    }


@pytest.mark.slow
def test_intelligibility_prefers_the_right_words(tmp_path):
    right = speak(tmp_path, "Please open the door.", name="right")
    wrong = speak(tmp_path, "Bananas grow on tall green trees.", name="wrong")
    r = intelligibility_reward([right, wrong], [{"text": "Please open the door!"}])
    assert r[0] > 0.8 and r[1] < 0.3


@pytest.mark.slow
def test_speaker_sim_prefers_the_same_voice(tmp_path):
    ref = speak(tmp_path, "This is my reference voice speaking clearly.", voice="en-us", name="ref")
    same = speak(tmp_path, "Another sentence in the very same voice.", voice="en-us", name="same")
    other = speak(tmp_path, "Another sentence in the very same voice.", voice="en-us+f3", name="other")
    batch = [{"text": "x", "reference_wav": ref["wav"], "reference_sample_rate": ref["sample_rate"]}]
    r = speaker_sim_reward([same, other], batch)
    assert r[0] > r[1]


@pytest.mark.slow
def test_asr_likelihood_ranks_two_wrong_renditions(tmp_path):
    # WER cannot rank these (both near 1); the forced log-probability can: half the right words beat none
    text = "Please open the door before the guests arrive."
    right = speak(tmp_path, text, name="right")
    half = speak(tmp_path, "Please open the window, bananas are yellow.", name="half")
    wrong = speak(tmp_path, "Bananas grow on tall green trees.", name="wrong")
    r = asr_likelihood_reward([right, half, wrong], [{"text": text}])
    assert r[0] > 0.85 and r[0] > r[1] > r[2], r.tolist()
