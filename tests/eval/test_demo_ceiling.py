"""Ground-truth ceiling on the real demo corpus (builds the tiny corpus: ~20 s + ASR; marked slow)."""

from __future__ import annotations

import pytest

from s2train.eval.suite import evaluate_from_config

from .conftest import needs_espeak


@pytest.mark.slow
@needs_espeak
def test_demo_ground_truth_ceiling(tmp_path):
    demo = pytest.importorskip("s2train.data.demo")
    demo.build_demo_corpus(tmp_path / "demo", size="tiny", seed=0)
    base = {
        "ckpt": None,
        "paths": {"output_dir": str(tmp_path / "eval")},
        "eval": {
            "name": "full",
            "seeds": [0],
            "evalset": {
                "kind": "demo",
                "path": str(tmp_path / "demo" / "manifest.jsonl"),
                "languages": ["en"],
            },
            "asr": {"model": "bundled-tiny.en", "cpu_threads": 2},
            "speaker": {"backend": "resemblyzer"},
        },
    }
    full = evaluate_from_config(base)
    assert full["eval/wer"] < 0.3 and full["eval/sim"] > 0.7
    tags_cfg = {
        **base,
        "eval": {**base["eval"], "name": "tags", "evalset": {**base["eval"]["evalset"], "subsets": ["tags"]}},
    }
    tags = evaluate_from_config(tags_cfg)
    assert tags["eval/tag_pass_rate"] >= 0.9
