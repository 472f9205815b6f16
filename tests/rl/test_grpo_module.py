import pytest
import pytorch_lightning as pl
import torch

from s2train.rl import rewards as rl_rewards
from s2train.rl.prompts import PromptDataModule
from s2train.rl.rewards import RewardConfigError

from .conftest import fake_generate


def frames_reward(samples, batch):
    """Fake reward: longer completions are better (varies inside every group)."""
    return torch.tensor([float(s["num_frames"]) for s in samples]) / 10


@pytest.fixture
def fake_reward(monkeypatch):
    monkeypatch.setitem(rl_rewards.REWARDS, "frames", frames_reward)


def make_module(bundle, **kw):
    from s2train.lit.grpo import GRPOLitModule

    args = dict(
        init_from=str(bundle / "bundle"), group_size=2, rewards={"frames": 1.0, "length": 0.5},
        max_frames=4, lr=1e-2, sample_every_n_steps=0, track_kl=True,
    )  # fmt: skip
    args.update(kw)
    module = GRPOLitModule(**args)
    module.engine._generate_fn = fake_generate
    return module


def fit_one_step(module, bundle, tmp_path):
    dm = PromptDataModule(prompts=str(bundle / "prompts.jsonl"), batch_size=2, shuffle=False)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return trainer


def test_lora_step_moves_adapters_only(tiny_bundle, fake_reward, tmp_path):
    module = make_module(tiny_bundle, beta=0.1)
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(".mlp." in n for n in trainable)  # MLP-only preset by default
    trainer = fit_one_step(module, tiny_bundle, tmp_path)
    after = dict(module.model.named_parameters())
    moved_b = [n for n in trainable if "lora_B" in n and not torch.equal(before[n], after[n])]
    assert len(moved_b) == sum("lora_B" in n for n in trainable)
    frozen_moved = [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]
    assert frozen_moved == []
    m = trainer.callback_metrics
    for key in ("rl/reward/total", "rl/reward/frames/mean", "rl/reward/frames/std", "rl/kl", "rl/clip_frac",
                "rl/advantage_std", "rl/completion/mean_frames", "rl/reward_failures"):  # fmt: skip
        assert key in m, key
    assert float(m["rl/advantage_std"]) > 0
    # one step from identical weights: the KL to the adapter-disabled reference is ~0 (lora_B started at 0)
    assert float(m["rl/kl"]) == pytest.approx(0.0, abs=1e-6)


def test_reference_is_base_weights_with_adapter_disabled(tiny_bundle, fake_reward):
    module = make_module(tiny_bundle)
    for n, p in module.model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(std=0.5)
    x = torch.tensor([[1, 2, 3]])
    codes = torch.zeros(1, 4, 3, dtype=torch.long)
    am = torch.zeros(1, 3, dtype=torch.bool)
    with torch.no_grad():
        policy = module.model(x, codes, am).logits
        with module.reference_policy() as ref:
            base = ref(x, codes, am).logits
        again = module.model(x, codes, am).logits
    assert not torch.allclose(policy, base, atol=1e-4)
    assert torch.allclose(policy, again)  # adapters re-enabled after the block


def test_full_finetune_keeps_a_frozen_reference(tiny_bundle, fake_reward, tmp_path):
    module = make_module(tiny_bundle, lora=None, ppo_epochs=2, clip_eps=0.1)
    ref = module._frozen["reference"]
    ref_before = {n: p.detach().clone() for n, p in ref.named_parameters()}
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    trainer = fit_one_step(module, tiny_bundle, tmp_path)
    assert all(torch.equal(ref_before[n], p) for n, p in ref.named_parameters())
    assert any(not torch.equal(before[n], p) for n, p in module.model.named_parameters())
    # second PPO epoch sees ratios != 1 after the first update
    assert float(trainer.callback_metrics["rl/kl"]) >= 0


def test_config_errors_come_before_loading(tiny_bundle):
    from s2train.lit.grpo import GRPOLitModule

    with pytest.raises(RewardConfigError, match="group_size"):
        GRPOLitModule(init_from="/nonexistent", group_size=1, rewards={"length": 1.0})
    with pytest.raises(RewardConfigError, match="unknown reward"):
        GRPOLitModule(init_from="/nonexistent", group_size=4, rewards={"wer": 1.0})


def test_export_writes_merged_bundle(tiny_bundle, fake_reward, tmp_path):
    from s2train.bundle import load_pretrained

    module = make_module(tiny_bundle)
    for n, p in module.model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(std=0.5)
    x = torch.tensor([[1, 2, 3]])
    codes = torch.zeros(1, 4, 3, dtype=torch.long)
    am = torch.zeros(1, 3, dtype=torch.bool)
    with torch.no_grad():
        expected = module.model(x, codes, am).logits
    out = module.export(tmp_path / "export")
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    model, _, codec_dir = load_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(model(x, codes, am).logits, expected, atol=1e-4)
    assert codec_dir is not None and codec_dir.exists()
    assert any("lora_" in n for n, _ in module.model.named_parameters())  # the live policy keeps its adapter


def test_policy_trains_without_dropout_so_step_0_kl_is_zero(tiny_bundle, fake_reward, tmp_path):
    # A base trained with dropout: at step 0 the LoRA policy equals its reference, so the k3 KL must be 0
    # (with dropout active in the policy forward it was 1-3 nats/token on the session-5 demo base).
    import shutil

    from s2train.bundle import export_bundle, load_pretrained

    model, tok, codec_dir = load_pretrained(tiny_bundle / "bundle")
    cfg = model.config.to_dict() | {"dropout": 0.5}
    root = tmp_path / "dropout"
    shutil.copytree(tiny_bundle, root, ignore=shutil.ignore_patterns("bundle"))
    export_bundle(model, cfg, tok, root / "codec", root / "bundle")
    module = make_module(root, beta=0.0, track_kl=True)
    assert module.model.config.dropout == 0.5
    trainer = fit_one_step(module, root, tmp_path / "run")
    assert float(trainer.callback_metrics["rl/kl"]) == pytest.approx(0.0, abs=1e-6)
