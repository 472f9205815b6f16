"""Importable task functions behind `train.py` and `eval.py`.

`train(cfg)` and `evaluate(cfg)` take a composed Hydra config (see `configs/`), so tests and notebooks call
them directly with `hydra.compose(...)`; the `@hydra.main` shims only add the CLI.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

RECIPES_HINT = "pass recipe=<name>, one of: {names} (configs/recipe/)"


class ConfigError(ValueError):
    """A configuration problem found before any training work starts."""


def _available_recipes() -> list[str]:
    root = Path(__file__).resolve().parents[1] / "configs" / "recipe"
    return sorted(p.stem for p in root.glob("*.yaml"))


def _wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def build_loggers(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every logger in the `logger` group; wandb goes offline when no API key is set."""
    from hydra.utils import instantiate

    loggers = []
    for name, lg_cfg in (cfg or {}).items():
        if not isinstance(lg_cfg, DictConfig) or "_target_" not in lg_cfg:
            continue
        kwargs = {}
        if "WandbLogger" in lg_cfg._target_:
            if lg_cfg.get("offline") is None:
                offline = os.environ.get("WANDB_MODE", "") in ("offline", "disabled") or not _wandb_has_key()
                kwargs["offline"] = offline
            Path(lg_cfg.save_dir).mkdir(parents=True, exist_ok=True)
        log.info("logger %s: %s", name, lg_cfg._target_)
        loggers.append(instantiate(lg_cfg, **kwargs))
    return loggers


def build_callbacks(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every callback in the `callbacks` group."""
    from hydra.utils import instantiate

    return [instantiate(cb) for cb in (cfg or {}).values() if isinstance(cb, DictConfig) and "_target_" in cb]


def _close_loggers() -> None:
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:
        pass


def _check_missing(cfg: DictConfig) -> None:
    """Name every required (`???`) value that is still unset, before any work starts."""
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    missing = [k for k in cfg if OmegaConf.is_missing(cfg, k)]
    try:
        missing += sorted(k for k in OmegaConf.missing_keys(cfg) if k not in missing)
    except (MissingMandatoryValue, InterpolationResolutionError) as err:  # interpolation to a missing value
        if not missing:
            missing.append(str(getattr(err, "full_key", err)))
    if missing:
        raise ConfigError(
            f"missing required config values: {', '.join(missing)} (set them on the command line, "
            f"e.g. {missing[0]}=...)"
        )


def _tokenizer_from_init(cfg: DictConfig) -> None:
    """Fine-tuning reads text with the tokenizer its `init_from` weights were trained with.

    `data.tokenizer_dir: null` (recipe=finetune/lora) becomes that tokenizer (`s2train.bundle.init_tokenizer_dir`:
    `<bundle>/tokenizer`, ...), so no new tokenizer is trained on the new texts. A tokenizer_dir given explicitly
    must exist and match it (vocabulary, semantic range); a missing one would be trained on the new texts and
    never fit the checkpoint's embeddings.

    Raises:
        ConfigError: no tokenizer can be found, or the given one does not fit; the message names the fix.
    """
    data = cfg.get("data")
    init_from = cfg.get("init_from")
    if not init_from or not isinstance(data, DictConfig) or "tokenizer_dir" not in data:
        return
    from s2train.bundle import init_tokenizer_dir
    from s2train.text.tokenizer import S2Tokenizer

    own = init_tokenizer_dir(init_from)
    given = data.tokenizer_dir
    fix = (
        f"leave data.tokenizer_dir unset (recipe=finetune/lora then use {own})"
        if own
        else "pass the one it was trained with"
    )
    if given is None:
        if own is None:
            raise ConfigError(
                f"init_from={init_from} records no tokenizer (a bundle has <dir>/tokenizer); pass "
                "data.tokenizer_dir=<the tokenizer its weights were trained with>"
            )
        data.tokenizer_dir = str(own.resolve())  # absolute: checkpoints must not depend on the cwd
        log.info("tokenizer of init_from: %s", own)
    elif not S2Tokenizer.exists(given):
        raise ConfigError(
            f"data.tokenizer_dir={given} holds no tokenizer; a new one trained on these texts would not fit the "
            f"embeddings of init_from={init_from}: {fix}"
        )
    elif own is not None and Path(given).resolve() != own.resolve():
        mine, theirs = S2Tokenizer.load(given), S2Tokenizer.load(own)
        if (mine.vocab_size, mine.semantic_start) != (theirs.vocab_size, theirs.semantic_start):
            raise ConfigError(
                f"data.tokenizer_dir={given} (vocab {mine.vocab_size}) is not the tokenizer of init_from={init_from} "
                f"({own}, vocab {theirs.vocab_size}): {fix}"
            )
    tok = S2Tokenizer.load(data.tokenizer_dir)
    wanted = data.get("num_semantic")
    if wanted is not None and tok.num_semantic is not None and int(wanted) != tok.num_semantic:
        raise ConfigError(
            f"the tokenizer of init_from={init_from} has {tok.num_semantic} semantic codes, the codec config "
            f"{int(wanted)}: pass the codec the checkpoint was trained with (codec=<group>, e.g. codec=s2 for S2 Pro)"
        )


def _resume_checkpoint(cfg: DictConfig, out_dir: Path) -> str | None:
    """`ckpt_path`, or with `resume=true` the run folder's `checkpoints/last.ckpt` (None: a fresh start)."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    if not cfg.get("resume"):
        return None
    last = out_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("resume=true: continuing %s", last)
        return str(last)
    log.warning("resume=true: no checkpoint in %s; starting a new run", last.parent)
    return None


def _quiet_resume_warnings(datamodule: Any, ckpt_path: str | None) -> None:
    """Silence two Lightning warnings that are wrong for an s2train resume.

    "dataloader is not resumable ... unreliable results": Lightning only knows stateful DataLoaders; s2train's
    data modules restore the position themselves (`s2train.data.sampler.MidEpochResume`: the resumed epoch skips
    the batches already trained; exact, tests/reliability/test_resume.py). "Checkpoint directory ... exists and
    is not empty": a resumed run writes into its own folder on purpose.
    """
    import warnings

    from s2train.data.sampler import MidEpochResume

    if isinstance(datamodule, MidEpochResume):
        warnings.filterwarnings("ignore", message=r".*dataloader is\s+not resumable.*")
    if ckpt_path:
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def train(cfg: DictConfig) -> dict[str, float]:
    """Train with the recipe in `cfg` and return the final callback metrics.

    Args:
        cfg: a composed `configs/train.yaml`.

    Returns:
        Scalar metrics Lightning collected (e.g. `train/loss`, `val/loss_slow`).

    Raises:
        ConfigError: no recipe selected, or a required value is missing.
    """
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from s2train.lit.callbacks import AtomicCheckpointIO

    if cfg.get("module") is None:
        raise ConfigError("no recipe selected: " + RECIPES_HINT.format(names=", ".join(_available_recipes())))
    _check_missing(cfg)
    _tokenizer_from_init(cfg)  # before anything reads data.tokenizer_dir

    pl.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        import torch

        torch.set_float32_matmul_precision(str(cfg.float32_matmul_precision))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "resolved_config.yaml", resolve=True)
    log.info("run directory: %s", out_dir)

    ckpt_path = _resume_checkpoint(cfg, out_dir)
    datamodule = instantiate(cfg.data, _convert_="partial")
    _quiet_resume_warnings(datamodule, ckpt_path)
    module = instantiate(cfg.module, _convert_="partial")
    callbacks = build_callbacks(cfg.get("callbacks"))
    loggers = build_loggers(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    try:
        if cfg.get("validate_only"):
            results = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt_path)
            metrics = {k: float(v) for r in results for k, v in r.items()}
            log.info("validation metrics: %s", {k: round(v, 4) for k, v in sorted(metrics.items())})
            return metrics
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        if hasattr(module, "export") and trainer.is_global_zero and not trainer.fast_dev_run:
            export_dir = Path(cfg.get("export_dir") or out_dir / "export")
            module.export(export_dir)
            log.info("exported model to %s", export_dir)
    finally:
        _close_loggers()
    metrics = {
        k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 0)() == 1
    }
    log.info("final metrics: %s", {k: round(v, 4) for k, v in sorted(metrics.items())})
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run an evaluation suite on a checkpoint, or compare result directories (`compare=[...]`)."""
    from s2train.eval.suite import evaluate_from_config

    return evaluate_from_config(cfg)
