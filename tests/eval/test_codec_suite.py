"""The codec suite scores a codec round trip: realigned audio (delayed decoders) and codebook use."""

import numpy as np
import pytest
import torch

from s2train.eval.evalset import codec_resynthesis_fn, demo_evalset, ground_truth_generate_fn
from s2train.eval.suite import Judges, _audio_metric_fns, run_suite
from tests.codec.conftest import codec_cfg


@pytest.mark.parametrize("name", ["tiny", "tiny_spectral"])
def test_codec_suite_reports_codebook_use_and_keeps_alignment(espeak_corpus, tmp_path, one_thread, name):
    from s2train.codec import build_codec

    torch.manual_seed(0)
    codec = build_codec(codec_cfg(name)).eval()
    evalset = demo_evalset(espeak_corpus / "manifest.jsonl", ["test", "heldout"], max_items=2)
    generate = codec_resynthesis_fn(codec)
    clips = generate(evalset.items)
    originals = ground_truth_generate_fn(evalset.items)
    for (y, sr), (x, sr_x) in zip(clips, originals):
        expected = len(x) * sr / sr_x  # the corpus is 22.05 kHz, the codec 16 kHz
        assert (
            sr == codec.sample_rate and abs(len(y) - expected) <= codec.hop_length
        )  # delay cut, length kept
        assert np.isfinite(y).all()
    judges = Judges(audio_metrics=_audio_metric_fns(["mel_distance"]))
    m = run_suite("codec", generate, evalset, judges, tmp_path / name)
    sizes = codec.codebook_sizes
    for k, size in enumerate(sizes):
        assert 0 < m[f"eval/cb{k}_usage"] <= 1 and 1 <= m[f"eval/cb{k}_perplexity"] <= size
    assert m["eval/cb_perplexity_min"] == min(m[f"eval/cb{k}_perplexity"] for k in range(len(sizes)))
    assert np.isfinite(m["eval/mel_distance"])
