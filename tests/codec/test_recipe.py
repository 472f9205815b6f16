"""The codec recipe composes with the real configs and trains end to end on the tiny demo corpus."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from s2train.codec import load_codec


def test_recipe_instantiates_codec_module(compose_train):
    cfg = compose_train("recipe=codec", "codec=tiny")
    assert cfg.task_name == "codec"
    assert cfg.data.sample_rate == cfg.codec.sample_rate == 16000
    module = instantiate(cfg.module, _convert_="partial")
    assert module.codec.hop_length == 16 and module.codec.num_codebooks == 4
    assert module.hparams.lambda_mel == 15.0 and tuple(module.hparams.betas) == (0.8, 0.99)
    assert len(module.disc.subs) == 5 + 3 + 3  # MPD + STFT magnitude + complex STFT


def test_recipe_default_codec_is_demo(compose_train):
    cfg = compose_train("recipe=codec")
    assert cfg.codec.encoder_type == "spectral" and cfg.codec.decoder_type == "istft"
    assert cfg.codec.spectral.frame_hop * cfg.codec.extra_strides[0] == 640  # 25 frames/s at 16 kHz


@pytest.mark.slow  # renders the tiny demo corpus (~10 s) then trains 2 batches (~7 s)
def test_train_entry_runs_and_exports(compose_train, tiny_corpus, tmp_path):
    from s2train.entry import train

    cfg = compose_train(
        "recipe=codec",
        "codec=tiny",
        f"data.manifest={tiny_corpus}",
        "data.batch_size=2",
        "data.crop_seconds=0.05",
        "logger=none",
        "callbacks=none",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "++trainer.limit_val_batches=1",
        "module.mel_warmup_steps=1",
        "module.discriminator.period_channels=[4,8]",
        "module.discriminator.spec_channels=4",
        "module.mel.window_lengths=[32,64,128]",
        "module.mel.n_mels=[5,10,20]",
    )
    torch.set_num_threads(1)
    metrics = train(cfg)
    assert "train/loss_mel" in metrics and "val/mel_distance" in metrics
    assert "train/loss_disc" in metrics  # discriminators switched on after one warm-up batch
    codec = load_codec(tmp_path / "export")
    assert codec.num_codebooks == 4


def test_init_from_loads_generator_and_rejects_other_configs(compose_train, tmp_path):
    from hydra.utils import instantiate

    from s2train.codec import build_codec, save_codec

    cfg = compose_train("recipe=codec", "codec=tiny")
    src = build_codec(OmegaConf.to_container(cfg.codec, resolve=True))
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.01)
    save_codec(src, tmp_path / "src")
    module = instantiate(cfg.module, init_from=str(tmp_path / "src"), _convert_="partial")
    for (name, a), b in zip(module.codec.state_dict().items(), src.state_dict().values()):
        assert torch.equal(a, b), name

    other = OmegaConf.to_container(cfg.codec, resolve=True) | {"latent_dim": cfg.codec.latent_dim * 2}
    save_codec(build_codec(other), tmp_path / "other")
    from s2train.lit.codec import CodecLitModule

    with pytest.raises(ValueError, match="differs from the run's codec config"):
        CodecLitModule(
            codec=OmegaConf.to_container(cfg.codec, resolve=True), init_from=str(tmp_path / "other")
        )
