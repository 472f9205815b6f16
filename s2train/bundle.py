"""Model bundles: everything inference needs, loadable without Lightning or Hydra.

Layout of a bundle directory::

    config.json          {"format": "s2train-bundle", "version": 1, "model": {DualARConfig fields},
                          "codec": {"path": ..., "copied": bool} | null, "metadata": {...}}
    model.safetensors    DualAR weights (plain names, LoRA merged)
    tokenizer/           S2Tokenizer.save()
    codec/               copy of the codec dir (only with copy_codec=True)
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from s2train.ar.config import DualARConfig
from s2train.ar.dual_ar import DualAR
from s2train.text.tokenizer import S2Tokenizer

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "s2train-bundle"
BUNDLE_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def is_bundle(path: str | Path) -> bool:
    """True when `path` is a directory with a bundle `config.json` and weights."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file() and (p / WEIGHTS).is_file()


def export_bundle(
    model: DualAR,
    model_cfg: DualARConfig | dict[str, Any] | None,
    tokenizer: S2Tokenizer,
    codec_dir: str | Path | None,
    out_dir: str | Path,
    copy_codec: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle.

    Args:
        model: the DualAR (without LoRA layers: merge them first, see `s2train.lit.lora.merge_lora`).
        model_cfg: resolved config (None: `model.config`).
        tokenizer: its tokenizer.
        codec_dir: the codec used to make the codes (a `save_codec` dir); referenced by absolute path, or
            copied into the bundle with `copy_codec`. None: no codec recorded.
        out_dir: bundle directory (created).
        copy_codec: copy the codec directory into `out_dir/codec`.
        metadata: extra JSON-able info (step, recipe, ...).

    Returns:
        The bundle path.
    """
    cfg = model_cfg if model_cfg is not None else model.config
    if not isinstance(cfg, DualARConfig):
        cfg = DualARConfig.from_dict(cfg)
    if any("lora_" in n or "base_layer" in n for n, _ in model.named_parameters()):
        raise ValueError("export_bundle: model still holds LoRA layers; merge them first (merge_lora)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / WEIGHTS))
    tokenizer.save(out / "tokenizer")
    codec = None
    if codec_dir is not None:
        src = Path(codec_dir)
        if not src.exists():
            raise FileNotFoundError(f"export_bundle: codec dir {src} does not exist")
        if copy_codec:
            if (out / "codec").exists():
                shutil.rmtree(out / "codec")
            shutil.copytree(src, out / "codec")
            codec = {"path": "codec", "copied": True}
        else:
            codec = {"path": str(src.resolve()), "copied": False}
    meta = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "num_params": model.num_params()}
    meta.update(metadata or {})
    doc = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "model": cfg.to_dict(),
        "codec": codec,
        "metadata": meta,
    }
    (out / CONFIG).write_text(json.dumps(doc, indent=2))
    log.info("exported bundle to %s", out)
    return out


def read_bundle_config(bundle_dir: str | Path) -> dict[str, Any]:
    """Parse and check `config.json` of a bundle."""
    d = Path(bundle_dir)
    if not (d / CONFIG).is_file():
        raise FileNotFoundError(f"{d} is not a bundle: no {CONFIG}")
    doc = json.loads((d / CONFIG).read_text())
    if doc.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{d / CONFIG}: format {doc.get('format')!r} is not {BUNDLE_FORMAT!r}")
    return doc


def load_bundle_state_dict(bundle_dir: str | Path) -> dict[str, torch.Tensor]:
    """The raw weights of a bundle (CPU tensors)."""
    from safetensors.torch import load_file

    return load_file(str(Path(bundle_dir) / WEIGHTS))


def load_pretrained(
    bundle_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[DualAR, S2Tokenizer, Path | None]:
    """Load a bundle written by `export_bundle`.

    Args:
        bundle_dir: the bundle directory.
        device: where to put the model.
        dtype: optional parameter dtype (e.g. torch.bfloat16).

    Returns:
        (DualAR in eval mode, S2Tokenizer, codec directory or None).

    Raises:
        ValueError: weights that do not fit the config (lists the keys).
    """
    d = Path(bundle_dir)
    from s2train.ar.upstream import is_upstream_dir, load_s2pro_pretrained

    if is_upstream_dir(d):  # a released S2 Pro directory (fish_qwen3_omni layout); its codec is not s2train's
        return load_s2pro_pretrained(d, device=device, dtype=dtype)
    doc = read_bundle_config(d)
    cfg = DualARConfig.from_dict(doc["model"])
    model = DualAR(cfg)
    missing, unexpected = load_model(model, str(d / WEIGHTS), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"bundle {d}: missing keys {sorted(missing)[:20]}, unexpected keys {sorted(unexpected)[:20]}"
        )
    model.to(device=device, dtype=dtype).eval()
    tokenizer = S2Tokenizer.load(d / "tokenizer")
    if tokenizer.vocab_size > cfg.vocab_size or tokenizer.semantic_start != cfg.semantic_start:
        raise ValueError(
            f"bundle {d}: tokenizer (vocab {tokenizer.vocab_size}, semantic_start {tokenizer.semantic_start}) "
            f"does not fit the model (vocab_size {cfg.vocab_size}, semantic_start {cfg.semantic_start})"
        )
    codec = doc.get("codec")
    codec_dir = None
    if codec:
        # copied codecs and relative paths (e.g. "../codec" in a shipped bundle) resolve against the bundle;
        # an absolute path stays as it is (pathlib's `/` keeps an absolute right-hand side)
        codec_dir = d / codec["path"]
        if not codec_dir.exists():
            log.warning("bundle %s: codec dir %s not found", d, codec_dir)
    return model, tokenizer, codec_dir


def _checkpoint_state_dict(path: Path) -> dict[str, torch.Tensor]:
    # Lightning checkpoints hold hyper-parameters (plain containers, sometimes OmegaConf): local, trusted files.
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    sd = ckpt.get("state_dict", ckpt)
    prefix = "model."
    if any(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if any(".lora_A." in k or ".base_layer." in k for k in sd):
        raise ValueError(
            f"{path} holds LoRA adapter layers; export its merged bundle (module.export) and init from that"
        )
    return sd


def init_tokenizer_dir(source: str | Path) -> Path | None:
    """The tokenizer the weights in `source` were trained with, or None when it cannot be found.

    `<bundle>/tokenizer` for a bundle, the directory itself for a released S2 Pro directory (its
    `tokenizer.json`), the `tokenizer_dir` recorded in a Lightning checkpoint's hyper-parameters.
    """
    p = Path(source)
    if is_bundle(p):
        found: str | Path | None = p / "tokenizer"
    elif p.is_dir():
        found = p
    elif p.is_file():
        # trusted local file; mmap: the hyper-parameters are read without loading the weights
        ckpt = torch.load(str(p), map_location="cpu", weights_only=False, mmap=True)
        found = (ckpt.get("hyper_parameters") or {}).get("tokenizer_dir") if isinstance(ckpt, dict) else None
    else:
        found = None
    return Path(found) if found and S2Tokenizer.exists(found) else None


def load_init_weights(model: torch.nn.Module, source: str | Path) -> None:
    """Load full weights into `model` from a bundle dir or a Lightning checkpoint, strictly.

    Args:
        model: a DualAR without LoRA layers.
        source: bundle directory, or a `.ckpt` file (keys under `model.`), or a plain torch state-dict file.

    Raises:
        FileNotFoundError: `source` missing.
        ValueError: missing / unexpected keys or shape mismatches, all listed.
    """
    p = Path(source)
    from s2train.ar.upstream import is_upstream_dir, load_s2pro_weights

    if is_upstream_dir(p):  # released S2 Pro weights: strict key mapping + upstream RoPE tables
        load_s2pro_weights(model, p)
        return
    if is_bundle(p):
        sd = load_bundle_state_dict(p)
    elif p.is_file():
        sd = _checkpoint_state_dict(p)
    else:
        raise FileNotFoundError(
            f"init_from={source}: not a bundle dir (config.json + {WEIGHTS}) nor a checkpoint file"
        )
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    shapes = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        hint = ""
        if any(s.startswith(("slow.tok_emb.", "tok_emb.")) for s in shapes):
            hint = (
                "\n  the text vocabulary differs: train with the tokenizer init_from was trained with "
                f"(data.tokenizer_dir={init_tokenizer_dir(p) or '<its tokenizer>'}; recipe=finetune/lora use it "
                "when data.tokenizer_dir is not set)"
            )
        raise ValueError(
            f"init_from={source} does not fit the model:\n"
            f"  shape mismatches ({len(shapes)}): {shapes[:20]}\n"
            f"  missing keys ({len(missing)}): {missing[:20]}\n"
            f"  unexpected keys ({len(unexpected)}): {unexpected[:20]}" + hint
        )
    model.load_state_dict(sd, strict=True)
    log.info("initialized %d tensors from %s", len(sd), source)
