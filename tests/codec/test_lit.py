"""CodecLitModule: manual GAN steps, optimizer-state round trip, mel loss going down."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from s2train.codec import load_codec
from s2train.lit.codec import CodecLitModule

SMALL_DISC = {
    "periods": [2, 3],
    "period_channels": [4, 8],
    "stft_ffts": [128],
    "complex_ffts": [64],
    "spec_channels": 4,
}
SMALL_MEL = {"window_lengths": [32, 64, 128], "n_mels": [5, 10, 20]}


class RandomWavs(Dataset):
    def __init__(self, n=4, s=320):
        g = torch.Generator().manual_seed(0)
        self.wavs = torch.randn(n, 1, s, generator=g) * 0.3

    def __len__(self):
        return len(self.wavs)

    def __getitem__(self, i):
        return {"wav": self.wavs[i]}


def make_module(tiny_cfg, **kw):
    torch.manual_seed(0)
    return CodecLitModule(
        codec=tiny_cfg, discriminator=SMALL_DISC, mel=SMALL_MEL, sample_every_n_steps=0, **kw
    )


def fit(module, tmp_path, steps, val=False):
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1 if val else 0,
        default_root_dir=tmp_path,
    )
    loader = DataLoader(RandomWavs(), batch_size=2)
    trainer.fit(module, loader, loader if val else None)
    return trainer


@pytest.mark.parametrize("warmup", [0, 100])
def test_two_manual_steps(tiny_cfg, tmp_path, warmup):
    module = make_module(tiny_cfg, mel_warmup_steps=warmup)
    d0 = [p.detach().clone() for p in module.disc.parameters()]
    g0 = [p.detach().clone() for p in module.codec.parameters()]
    # max_steps counts optimizer steps; 2 batches = one epoch, so validation runs once.
    trainer = fit(module, tmp_path, steps=4 if warmup == 0 else 2, val=True)
    assert module.train_step == 2
    m = trainer.callback_metrics
    for key in ("val/mel_distance", "val/stft_distance", "val/si_sdr"):
        assert key in m and torch.isfinite(m[key])
    for key in (
        "train/loss_mel",
        "train/loss_commit",
        "train/loss_codebook",
        "train/cb0_perplexity",
        "train/cb3_usage",
    ):
        assert key in m and torch.isfinite(m[key])
    d_changed = any(not torch.equal(a, b) for a, b in zip(d0, module.disc.parameters()))
    g_changed = any(not torch.equal(a, b) for a, b in zip(g0, module.codec.parameters()))
    assert g_changed
    assert d_changed == (warmup == 0)
    assert ("train/loss_disc" in m) == (warmup == 0) and ("train/loss_adv" in m) == (warmup == 0)


def test_checkpoint_restores_both_optimizers(tiny_cfg, tmp_path):
    module = make_module(tiny_cfg)
    trainer = fit(module, tmp_path, steps=4)
    ckpt_path = tmp_path / "a.ckpt"
    trainer.save_checkpoint(ckpt_path)
    ckpt = torch.load(ckpt_path, weights_only=False)
    assert len(ckpt["optimizer_states"]) == 2 and len(ckpt["lr_schedulers"]) == 2
    assert all(len(s["state"]) > 0 for s in ckpt["optimizer_states"])

    fresh = make_module(tiny_cfg)
    fresh.load_state_dict(ckpt["state_dict"])
    assert fresh.train_step == 2
    (opt_g, opt_d), _ = fresh.configure_optimizers()
    opt_g.load_state_dict(ckpt["optimizer_states"][0])
    opt_d.load_state_dict(ckpt["optimizer_states"][1])
    (old_g, old_d) = trainer.optimizers
    for new, old in ((opt_g, old_g), (opt_d, old_d)):
        k = next(iter(old.state))
        idx = list(old.state).index(k)
        new_state = list(new.state.values())[idx]
        assert torch.equal(new_state["exp_avg"], old.state[k]["exp_avg"])

    # Resuming through Lightning continues the step counter and restores the optimizers.
    resumed = make_module(tiny_cfg)
    trainer2 = pl.Trainer(
        accelerator="cpu",
        max_steps=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer2.fit(resumed, DataLoader(RandomWavs(), batch_size=2), ckpt_path=ckpt_path)
    assert resumed.train_step == 3
    assert trainer2.optimizers[1].state  # discriminator optimizer state is there


def test_export_writes_a_loadable_codec(tiny_cfg, tmp_path):
    module = make_module(tiny_cfg)
    module.export(tmp_path / "codec")
    codec = load_codec(tmp_path / "codec")
    x = torch.randn(1, 1, 160) * 0.3
    assert torch.equal(codec.encode(x), module.codec.eval().encode(x))


def test_mel_loss_decreases_on_a_fixed_batch(tiny_cfg):
    module = make_module(tiny_cfg, lr=3e-3)
    codec = module.codec.train()
    t = torch.arange(640) / 16000
    wav = (0.5 * torch.sin(2 * torch.pi * 300 * t) * torch.linspace(0.2, 1, 640)).expand(2, 1, 640).clone()
    opt = torch.optim.AdamW(codec.parameters(), lr=3e-3, betas=(0.8, 0.99))
    losses = []
    for _ in range(25):
        out = codec(wav)
        loss = module.mel_loss(out.wav, wav)
        total = loss + 0.25 * out.commitment_loss + out.codebook_loss
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert min(losses[-5:]) < 0.7 * losses[0], losses


def test_semantic_head_trains_and_is_not_saved(tiny_cfg, tmp_path):
    cfg = {**tiny_cfg, "semantic": {"teacher": {"name": "mel", "dim": 12, "n_mels": 16, "n_fft": 256}}}
    module = make_module(cfg)
    out = module.codec.train()(torch.randn(2, 1, 640) * 0.3)
    assert out.semantic_loss is not None and torch.isfinite(out.semantic_loss)
    out.semantic_loss.backward()
    assert module.codec.semantic_head.net[0].weight.grad.abs().sum() > 0
    assert (
        module.codec.quantizer.stages[0].in_proj.weight.grad.abs().sum() > 0
    )  # distills into codebook 0's path
    assert module.codec.quantizer.stages[1].in_proj.weight.grad is None
    assert not any(k.startswith("_teacher") or "teacher" in k for k in module.codec.state_dict())
    module.export(tmp_path / "c")
    assert load_codec(tmp_path / "c").semantic_head is not None
