"""LoRA via peft on the DualAR: presets, merge parity, disable, adapter save/load, adapter-only resume."""

import pytest
import pytorch_lightning as pl
import torch

from s2train.ar import DualAR, preset
from s2train.data.codes import CodesDataModule, write_synthetic_codes
from s2train.lit.ar import DualARLitModule
from s2train.lit.lora import (
    PRESETS,
    adapters_disabled,
    apply_lora,
    has_lora,
    load_adapter,
    lora_state_dict,
    merge_lora,
    save_adapter,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Single-threaded tiny models (see tests/conftest.py::one_thread)."""


CFG = dict(vocab_size=80, semantic_start=16, num_semantic=64, dim=32, n_heads=2, n_kv_heads=1, ffn_dim=64,
           fast_dim=32, fast_n_heads=2, fast_n_kv_heads=1, fast_ffn_dim=64, max_seq_len=64)  # fmt: skip


def _model(seed=0) -> DualAR:
    torch.manual_seed(seed)
    return DualAR(preset("tiny", **CFG)).eval()


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 64, (2, 4, 12), generator=g)
    audio = torch.zeros(2, 12, dtype=torch.bool)
    audio[:, 5:] = True
    tokens = torch.randint(0, 16, (2, 12), generator=g)
    tokens[audio] = codes[:, 0][audio] + 16
    return tokens, codes, audio


def _logits(model):
    tokens, codes, audio = _inputs()
    out = model(tokens, codes, audio)
    fast = model.fast_forward(
        out.hidden[:, 4:-1].reshape(-1, out.hidden.shape[-1]), codes[:, :, 5:].transpose(1, 2).reshape(-1, 4)
    )
    return out.logits, fast


def _perturb(model):
    # Fresh LoRA B is zero (adapter = identity); make it non-trivial so parity tests can fail.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_merge_and_disable(name):
    base = _model()
    base_slow, base_fast = _logits(base)
    model = apply_lora(_model(), name)
    assert has_lora(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    if name == "fast_only":
        assert all(n.startswith("fast.") for n in trainable)
    if name == "mlp_rslora":
        assert all(".mlp." in n for n in trainable)
    _perturb(model)
    with torch.no_grad():
        ad_slow, ad_fast = _logits(model)
        with adapters_disabled(model):
            off_slow, off_fast = _logits(model)
        again_slow, _ = _logits(model)
    assert torch.allclose(off_slow, base_slow, atol=1e-6) and torch.allclose(off_fast, base_fast, atol=1e-6)
    assert torch.equal(again_slow, ad_slow)  # re-enabled after the block
    assert not torch.allclose(ad_fast, base_fast, atol=1e-4)
    merged = merge_lora(model)
    assert not has_lora(merged)
    assert set(merged.state_dict()) == set(base.state_dict())
    with torch.no_grad():
        m_slow, m_fast = _logits(merged)
    assert torch.allclose(m_slow, ad_slow, atol=1e-5) and torch.allclose(m_fast, ad_fast, atol=1e-5)


def test_bad_targets_raise():
    with pytest.raises(ValueError, match="match no Linear"):
        apply_lora(_model(), {"r": 4, "target_modules": r".*nonexistent"})
    with pytest.raises(ValueError, match="unknown LoRA preset"):
        apply_lora(_model(), "nope")


def test_adapter_save_load(tmp_path):
    model = apply_lora(_model(), "attn_mlp")
    _perturb(model)
    save_adapter(model, tmp_path / "ad")
    other = load_adapter(_model(), tmp_path / "ad")
    a, b = lora_state_dict(model), lora_state_dict(other)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.allclose(_logits(model)[0], _logits(other)[0], atol=1e-6)


def test_lora_module_adapter_only_checkpoint_resume(tmp_path):
    ds = write_synthetic_codes(tmp_path / "codes", num_items=12, num_codebooks=4, codebook_size=64)
    dm = CodesDataModule(str(ds), str(tmp_path / "tok"), batch_size=4, num_semantic=64, vocab_size=280)
    tiny = dict(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, ffn_dim=64, num_codebooks=4, codebook_size=64,
                fast_dim=32, fast_n_layers=1, fast_n_heads=2, fast_n_kv_heads=1, fast_head_dim=16, fast_ffn_dim=64)  # fmt: skip
    (tmp_path / "codec").mkdir()
    base = DualARLitModule(model=tiny, tokenizer_dir=str(tmp_path / "tok"), codec_dir=str(tmp_path / "codec"))
    base.export(tmp_path / "base")
    kw = dict(
        model=tiny,
        tokenizer_dir=str(tmp_path / "tok"),
        init_from=str(tmp_path / "base"),
        lora="attn_mlp",
        lr=1e-2,
    )
    module = DualARLitModule(**kw)
    trainer = pl.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    ckpt = tmp_path / "a.ckpt"
    trainer.save_checkpoint(ckpt)
    sd = torch.load(ckpt, weights_only=False)["state_dict"]
    assert sd and all("lora_" in k for k in sd)  # adapter-only
    trained = lora_state_dict(module.model)
    resumed = DualARLitModule(**kw)
    assert not all(torch.equal(v, lora_state_dict(resumed.model)[k]) for k, v in trained.items())
    trainer2 = pl.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                          enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0)  # fmt: skip
    trainer2.fit(resumed, datamodule=dm, ckpt_path=ckpt)
    assert trainer2.global_step == 3
    restored = lora_state_dict(resumed.model)
    assert all(torch.equal(v, restored[k]) for k, v in trained.items())
    # Export merges the adapter; the bundle reloads to the same logits as the adapter model.
    from s2train.bundle import load_pretrained

    resumed.export(tmp_path / "out")
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
    loaded, _, codec_dir = load_pretrained(tmp_path / "out")
    assert codec_dir == (tmp_path / "codec").resolve()  # inherited from the init_from bundle
    resumed.model.eval()
    t, c, a = _inputs()
    c = c % 64
    t = torch.where(a, c[:, 0] + loaded.config.semantic_start, t)
    with torch.no_grad():
        assert torch.allclose(loaded(t, c, a).logits, resumed.model(t, c, a).logits, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_presets_match_python_presets(name):
    from omegaconf import OmegaConf

    from s2train.lit.lora import lora_spec
    from tests.conftest import CONFIG_DIR

    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "lora" / f"{name}.yaml"))
    assert lora_spec(cfg) == lora_spec(name)
