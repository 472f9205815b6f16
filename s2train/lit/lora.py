"""LoRA adapters on the DualAR via `peft` (inject into the plain nn.Module, no PeftModel wrapper).

Presets (configs/lora/*.yaml):
- `attn_mlp`: attention (fused qkv, output) + SwiGLU MLP of slow and fast AR, r 8, alpha 16, dropout 0.01
  (the public fish-speech fine-tune setting, minus embeddings/output).
- `fast_only`: the fast AR's attention + MLP, r 32, alpha 16.
- `mlp_rslora`: MLP layers only, rsLoRA r 16, alpha 64 (the S2 RL setting).

Injection renames wrapped weights (`...qkv.weight` -> `...qkv.base_layer.weight`), so base weights are loaded
*before* injection (`init_from`) and `merge_lora` restores the plain names for export.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"

PRESETS: dict[str, dict[str, Any]] = {
    "attn_mlp": dict(r=8, alpha=16, dropout=0.01, use_rslora=False,
                     target_modules=r".*layers\.\d+\.(attn\.(qkv|o)|mlp\.(gate|up|down))"),
    "fast_only": dict(r=32, alpha=16, dropout=0.0, use_rslora=False,
                      target_modules=r"fast\.layers\.\d+\.(attn\.(qkv|o)|mlp\.(gate|up|down))"),
    "mlp_rslora": dict(r=16, alpha=64, dropout=0.0, use_rslora=True,
                       target_modules=r".*layers\.\d+\.mlp\.(gate|up|down)"),
}  # fmt: skip


def _matches(name: str, targets: str | Sequence[str]) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def lora_spec(spec: dict[str, Any] | str) -> dict[str, Any]:
    """Normalize a preset name or a config dict (keys r, alpha, dropout, target_modules, use_rslora)."""
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown LoRA preset {spec!r}; choose from {sorted(PRESETS)}")
        return dict(PRESETS[spec])
    spec = {k: v for k, v in dict(spec).items() if not k.startswith("_")}
    allowed = {"r", "alpha", "dropout", "target_modules", "use_rslora", "name"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"LoRA config: unknown keys {unknown}; allowed {sorted(allowed)}")
    if "target_modules" not in spec or "r" not in spec:
        raise ValueError("LoRA config needs at least `r` and `target_modules`")
    tm = spec["target_modules"]
    spec["target_modules"] = tm if isinstance(tm, str) else list(tm)
    spec.setdefault("alpha", 2 * spec["r"])
    spec.setdefault("dropout", 0.0)
    spec.setdefault("use_rslora", False)
    spec.pop("name", None)
    return spec


def apply_lora(model: nn.Module, spec: dict[str, Any] | str) -> nn.Module:
    """Inject LoRA adapters in place; freezes everything except the adapters.

    Args:
        model: a DualAR (any nn.Module).
        spec: preset name or dict with `r`, `alpha`, `dropout`, `target_modules` (a full-match regex over
            module names, or a list of name suffixes), `use_rslora`.

    Returns:
        The same module, with adapters.

    Raises:
        ValueError: when `target_modules` matches no Linear/Embedding module (lists some valid names).
    """
    spec = lora_spec(spec)
    candidates = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Embedding)]
    hit = [n for n in candidates if _matches(n, spec["target_modules"])]
    if not hit:
        raise ValueError(
            f"LoRA target_modules {spec['target_modules']!r} match no Linear/Embedding module; "
            f"some valid names: {candidates[:12]}"
        )
    cfg = LoraConfig(
        r=int(spec["r"]), lora_alpha=float(spec["alpha"]), lora_dropout=float(spec["dropout"]),
        target_modules=spec["target_modules"], use_rslora=bool(spec["use_rslora"]), bias="none",
    )  # fmt: skip
    was_training = model.training
    inject_adapter_in_model(cfg, model)
    # New dropout modules start in train mode; keep the model's mode (eval stays eval).
    model.train(was_training)
    model._s2_lora_spec = spec  # remembered for adapter checkpoints
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "LoRA on %d modules (r=%s, alpha=%s): %d trainable params",
        len(hit),
        spec["r"],
        spec["alpha"],
        n_train,
    )
    return model


def has_lora(model: nn.Module) -> bool:
    """True when the model holds LoRA layers."""
    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter-only weights (peft key layout, adapter name stripped)."""
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapter weights; raises listing keys that did not land in the model."""
    result = set_peft_model_state_dict(model, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ValueError(f"adapter keys not found in the model: {unexpected[:20]}")


def save_adapter(model: nn.Module, out_dir: str | Path) -> Path:
    """Write `adapter_model.safetensors` + `adapter_config.json` (the LoRA spec) into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in lora_state_dict(model).items()}, str(out / ADAPTER_WEIGHTS))
    (out / ADAPTER_CONFIG).write_text(json.dumps(getattr(model, "_s2_lora_spec", {}), indent=2))
    return out


def load_adapter(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """Inject (if needed) and load an adapter written by `save_adapter`."""
    d = Path(adapter_dir)
    if not (d / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(f"no {ADAPTER_WEIGHTS} in {d}")
    if not has_lora(model):
        apply_lora(model, json.loads((d / ADAPTER_CONFIG).read_text()))
    load_lora_state_dict(model, load_file(str(d / ADAPTER_WEIGHTS)))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge adapters into the base weights and unwrap the LoRA layers (in place); plain key names again."""
    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    for p in model.parameters():
        p.requires_grad_(True)
    if hasattr(model, "_s2_lora_spec"):
        del model._s2_lora_spec
    return model


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run the base model (adapters off) inside the block, e.g. for the RL reference policy."""
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    was = [not m.disable_adapters for m in layers]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield model
    finally:
        for m, on in zip(layers, was):
            m.enable_adapters(on)
