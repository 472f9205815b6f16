"""Tiny bundle (tokenizer + DualAR + codec) and prompts for the GRPO module tests."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

TEXTS = ["hello there world", "the quick brown fox", "see you soon", "a tiny test voice"]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    return build_tiny_bundle(tmp_path_factory.mktemp("grpo_bundle"))


def build_tiny_bundle(root):
    """Write codec/, bundle/, ref*.wav and prompts.jsonl under ``root``; returns ``root``."""
    from s2train.ar import DualAR, preset
    from s2train.bundle import export_bundle
    from s2train.codec import DACStyleCodec, save_codec
    from s2train.text import S2Tokenizer

    torch.manual_seed(0)
    codec = DACStyleCodec(
        sample_rate=16000, codebook_sizes=[64, 32, 32, 32], encoder_dim=4, decoder_dim=16,
        strides=[8, 8], extra_strides=[4], latent_dim=16, quantizer_dropout=0.0,
    )  # fmt: skip
    save_codec(codec, root / "codec")
    tok = S2Tokenizer.train(TEXTS * 4, vocab_size=300, num_semantic=64)
    cfg = preset(
        "tiny", vocab_size=len(tok), semantic_start=tok.semantic_start, num_semantic=64, n_layers=1,
        max_seq_len=512, codebook_sizes=[64, 32, 32, 32],
    )  # fmt: skip
    export_bundle(DualAR(cfg), cfg, tok, root / "codec", root / "bundle")
    rng = np.random.default_rng(0)
    rows = []
    for i, text in enumerate(TEXTS):
        wav = (0.1 * np.sin(np.arange(4000) * 0.05 * (i + 1)) + 0.01 * rng.standard_normal(4000)).astype(
            np.float32
        )
        sf.write(root / f"ref{i}.wav", wav, 16000)
        rows.append({"text": text, "reference_path": f"ref{i}.wav", "reference_text": TEXTS[(i + 1) % 4]})
    (root / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def fake_generate(model, prompts, params, max_frames, seed, num_samples=1):
    """Stand-in for s2train.inference.generate: random frames, random stop; no model call."""
    g = torch.Generator().manual_seed(int(seed))
    k = model.config.num_codebooks
    out = []
    for _ in prompts:
        group = []
        for _ in range(num_samples):
            t = int(torch.randint(1, max_frames + 1, (1,), generator=g))
            codes = torch.randint(0, 32, (k, t), generator=g)
            group.append({"codes": codes, "ended": t < max_frames})
        out.append(group)
    return out


CONFIG_DIR = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs"
