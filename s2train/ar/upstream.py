"""Import and export Fish Audio S2 Pro checkpoints in the released `fish_qwen3_omni` layout.

A released directory holds `config.json` (`model_type: fish_qwen3_omni`, a `text_config` for the slow AR, an
`audio_decoder_config` for the fast AR, `semantic_start_token_id` / `semantic_end_token_id`), bf16 weights in
sharded safetensors with `model.safetensors.index.json`, the Qwen3 `tokenizer.json` and the codec (`codec.pth`).
Slow-AR tensors live under `text_model.model.`, fast-AR tensors under `audio_decoder.`, and the slow AR's
codebook input table under `audio_decoder.codebook_embeddings`. See docs/s2pro.md for the key table.

Two things the released weights need that a `DualAR(cfg)` does not build by default are handled here by
adjusting the built model in place (`adapt_model`): the released fast AR has no QK-norm, and a fast AR whose
width differs from the slow AR projects its input with a biased Linear. Pure torch/safetensors/json.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from s2train.ar.config import DualARConfig
from s2train.ar.dual_ar import DualAR
from s2train.ar.layers import RotaryTable

try:  # `ar` must import with torch/safetensors only (the GPU images have no tqdm guarantee)
    from tqdm import tqdm
except ImportError:  # pragma: no cover

    def tqdm(it, **_):  # type: ignore[no-redef]
        return it


log = logging.getLogger(__name__)

MODEL_TYPE = "fish_qwen3_omni"
CONFIG_FILE = "config.json"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
SLOW, FAST = "text_model.model.", "audio_decoder."

# One pre-norm block: upstream suffix -> s2train suffix. q/k norms only exist when `attention_qk_norm` is set.
_BLOCK = (
    ("attention_norm.weight", "attn_norm.weight"),
    ("attention.wqkv.weight", "attn.qkv.weight"),
    ("attention.q_norm.weight", "attn.q_norm.weight"),
    ("attention.k_norm.weight", "attn.k_norm.weight"),
    ("attention.wo.weight", "attn.o.weight"),
    ("ffn_norm.weight", "mlp_norm.weight"),
    ("feed_forward.w1.weight", "mlp.gate.weight"),
    ("feed_forward.w3.weight", "mlp.up.weight"),
    ("feed_forward.w2.weight", "mlp.down.weight"),
)
_QK = ("attention.q_norm.weight", "attention.k_norm.weight")


@dataclass(frozen=True)
class UpstreamLayout:
    """The parts of the released layout that vary with the config (besides sizes).

    Attributes:
        n_layers / fast_n_layers: block counts.
        tie_embeddings: no `text_model.lm_head.weight` when True.
        slow_qk_norm / fast_qk_norm: per-head q/k RMSNorm present (released S2 Pro: True / False).
        fast_project_in: `audio_decoder.project_in` (a Linear with bias) exists, i.e. fast dim != slow dim.
    """

    n_layers: int = 36
    fast_n_layers: int = 4
    tie_embeddings: bool = True
    slow_qk_norm: bool = True
    fast_qk_norm: bool = False
    fast_project_in: bool = False


def key_pairs(layout: UpstreamLayout) -> list[tuple[str, str]]:
    """Every (upstream key, s2train key) pair of a checkpoint with this layout, in upstream file order."""
    pairs = [(SLOW + "embeddings.weight", "slow.tok_emb.weight")]
    for prefix, ours, n, qk in (
        (SLOW, "slow.", layout.n_layers, layout.slow_qk_norm),
        (FAST, "fast.", layout.fast_n_layers, layout.fast_qk_norm),
    ):
        if prefix == FAST:
            pairs.append((FAST + "codebook_embeddings.weight", "slow.codebook_emb.weight"))
            if layout.fast_project_in:
                pairs += [(FAST + "project_in.weight", "fast.input_proj.weight")]
                pairs += [(FAST + "project_in.bias", "fast.input_proj.bias")]
            pairs.append((FAST + "embeddings.weight", "fast.code_emb.weight"))
        for i in range(n):
            pairs += [
                (f"{prefix}layers.{i}.{up}", f"{ours}layers.{i}.{mine}")
                for up, mine in _BLOCK
                if qk or up not in _QK
            ]
        pairs.append((prefix + "norm.weight", ours + "norm.weight"))
        if prefix == FAST:
            pairs.append((FAST + "output.weight", "fast.output.weight"))
        elif not layout.tie_embeddings:
            pairs.append(("text_model.lm_head.weight", "slow.output.weight"))
    return pairs


def mapping_table(layout: UpstreamLayout | None = None) -> list[tuple[str, str, int]]:
    """Rows (upstream name pattern, s2train name pattern, count); `{i}` stands for the block index.

    Args:
        layout: defaults to the released S2 Pro (36 + 4 blocks, tied, QK-norm in the slow AR only).
    """
    rows: dict[tuple[str, str], int] = {}
    for up, mine in key_pairs(layout or UpstreamLayout()):
        key = (
            re.sub(r"\.layers\.\d+\.", ".layers.{i}.", up),
            re.sub(r"\.layers\.\d+\.", ".layers.{i}.", mine),
        )
        rows[key] = rows.get(key, 0) + 1
    return [(up, mine, n) for (up, mine), n in rows.items()]


# ---------------------------------------------------------------------------------------------- config
def _multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - n % k


def _sub(raw: dict[str, Any], name: str, where: str) -> tuple[dict[str, int | float], bool]:
    """Sizes of one upstream sub-config with the upstream defaults filled in; returns (sizes, qk_norm)."""
    for key in ("n_layer", "n_head", "dim", "vocab_size"):
        if key not in raw:
            raise ValueError(f"{where}: {name}.{key} is missing")
    for key in ("attention_qkv_bias", "attention_o_bias", "use_moe"):
        if raw.get(key):
            raise ValueError(f"{where}: {name}.{key}=true is not supported by s2train's DualAR")
    dim, heads = int(raw["dim"]), int(raw["n_head"])
    kv = int(raw.get("n_local_heads", -1))
    ffn = raw.get("intermediate_size") or _multiple(int(2 * 4 * dim / 3), 256)
    sizes = {
        "dim": dim, "n_layers": int(raw["n_layer"]), "n_heads": heads, "n_kv_heads": heads if kv == -1 else kv,
        "head_dim": int(raw.get("head_dim") or dim // heads), "ffn_dim": int(ffn),
    }  # fmt: skip
    return sizes, bool(raw.get("attention_qk_norm", False))


def config_from_upstream(
    raw: dict[str, Any], where: str = CONFIG_FILE
) -> tuple[DualARConfig, UpstreamLayout]:
    """Translate a released `config.json` (parsed) into a `DualARConfig` and the key layout.

    Missing keys take the upstream defaults; the fast AR inherits `rope_base` / `norm_eps` from the text
    config when its own are absent. Raises ValueError naming the field for anything s2train cannot represent.
    """
    if raw.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{where}: model_type={raw.get('model_type')!r}, expected {MODEL_TYPE!r}")
    tc, adc = raw.get("text_config"), raw.get("audio_decoder_config")
    if not isinstance(tc, dict) or not isinstance(adc, dict):
        raise ValueError(f"{where}: needs both text_config and audio_decoder_config objects")
    slow, slow_qk = _sub(tc, "text_config", where)
    fast, fast_qk = _sub(adc, "audio_decoder_config", where)
    if "num_codebooks" not in adc:
        raise ValueError(f"{where}: audio_decoder_config.num_codebooks is missing")
    rope, eps = float(tc.get("rope_base", 10000)), float(tc.get("norm_eps", 1e-5))
    for key, value in (("rope_base", rope), ("norm_eps", eps)):
        if float(adc.get(key, value)) != value:
            raise ValueError(
                f"{where}: audio_decoder_config.{key}={adc[key]} differs from text_config.{key}={value}; "
                "s2train's DualAR has one value for both"
            )
    if int(adc.get("text_dim", slow["dim"])) != slow["dim"]:
        raise ValueError(
            f"{where}: audio_decoder_config.text_dim={adc['text_dim']} != text_config.dim={slow['dim']}"
        )
    start, end = raw.get("semantic_start_token_id"), raw.get("semantic_end_token_id")
    if start is None or end is None:
        raise ValueError(f"{where}: semantic_start_token_id and semantic_end_token_id are required")
    cfg = DualARConfig(
        vocab_size=int(tc["vocab_size"]), rope_base=rope, norm_eps=eps,
        tie_embeddings=bool(tc.get("tie_word_embeddings", True)), max_seq_len=int(tc.get("max_seq_len", 2048)),
        num_codebooks=int(adc["num_codebooks"]), codebook_size=int(adc["vocab_size"]),
        # The upstream range check is inclusive of semantic_end_token_id.
        semantic_start=int(start), num_semantic=int(end) - int(start) + 1,
        dropout=float(tc.get("dropout", 0.0)), rope_bf16_tables=True, rope_fp32_angles=True,
        **slow, **{"fast_" + k: v for k, v in fast.items() if k != "dim"}, fast_dim=fast["dim"],
    )  # fmt: skip
    # Forward compatible: once DualARConfig carries these switches, the config itself records the layout.
    names = {f.name for f in dataclasses.fields(DualARConfig)}
    flags = {"qk_norm": slow_qk, "fast_qk_norm": fast_qk, "fast_input_bias": cfg.fast_dim != cfg.dim}
    if names & flags.keys():
        cfg = DualARConfig.from_dict(cfg.to_dict(), **{k: v for k, v in flags.items() if k in names})
    layout = UpstreamLayout(
        n_layers=cfg.n_layers, fast_n_layers=cfg.fast_n_layers, tie_embeddings=cfg.tie_embeddings,
        slow_qk_norm=slow_qk, fast_qk_norm=fast_qk, fast_project_in=cfg.fast_dim != cfg.dim,
    )  # fmt: skip
    return cfg.validate(), layout


def upstream_config(
    cfg: DualARConfig, layout: UpstreamLayout, base: dict[str, Any] | None = None, dtype: str = "bfloat16"
) -> dict[str, Any]:
    """The `config.json` dict for `cfg`; fields of `base` (e.g. an imported config) that s2train does not model
    (token ids, initializer_range, ...) are kept, the model fields are overwritten from `cfg`."""
    out = copy.deepcopy(base) if base else {}

    def sub(key: str, prefix: str, **extra: Any) -> dict[str, Any]:
        d = out.setdefault(key, {})
        dim = getattr(cfg, prefix + "dim")
        d.setdefault("initializer_range", dim**-0.5)
        new = dict(
            dim=dim, n_layer=getattr(cfg, prefix + "n_layers"), n_head=getattr(cfg, prefix + "n_heads"),
            n_local_heads=getattr(cfg, prefix + "n_kv_heads"), head_dim=getattr(cfg, prefix + "head_dim"),
            intermediate_size=getattr(cfg, prefix + "ffn_dim"), rope_base=cfg.rope_base, norm_eps=cfg.norm_eps,
            dropout=cfg.dropout, attention_qkv_bias=False, attention_o_bias=False, use_moe=False, **extra,
        )  # fmt: skip
        # Keep base's spelling of equal values (1000000 vs 1000000.0) so an unchanged config round-trips as text.
        d.update({k: v for k, v in new.items() if k not in d or d[k] != v})
        return d

    out["model_type"] = MODEL_TYPE
    sub("text_config", "", model_type="fish_qwen3", vocab_size=cfg.vocab_size, max_seq_len=cfg.max_seq_len,
        tie_word_embeddings=cfg.tie_embeddings, attention_qk_norm=layout.slow_qk_norm)  # fmt: skip
    sub("audio_decoder_config", "fast_", model_type="fish_qwen3_audio_decoder", vocab_size=cfg.codebook_size,
        num_codebooks=cfg.num_codebooks, text_dim=cfg.dim, max_seq_len=cfg.num_codebooks + 1,
        tie_word_embeddings=False, attention_qk_norm=layout.fast_qk_norm)  # fmt: skip
    out["semantic_start_token_id"] = cfg.semantic_start
    out["semantic_end_token_id"] = cfg.semantic_start + cfg.num_semantic - 1
    out["torch_dtype" if "torch_dtype" in out and "dtype" not in out else "dtype"] = dtype
    return out


def read_upstream_config(directory: str | Path) -> dict[str, Any]:
    """Parse `config.json` of a released directory (raises FileNotFoundError / ValueError naming the path)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an S2 Pro checkpoint: no {CONFIG_FILE}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if raw.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{path}: model_type={raw.get('model_type')!r}, expected {MODEL_TYPE!r}")
    return raw


def is_upstream_dir(path: str | Path) -> bool:
    """True for a directory in the released layout (config.json with model_type fish_qwen3_omni + weights)."""
    p = Path(path)
    if not (p.is_dir() and (p / CONFIG_FILE).is_file()):
        return False
    if not ((p / INDEX_FILE).is_file() or (p / SINGLE_FILE).is_file()):
        return False
    try:
        return json.loads((p / CONFIG_FILE).read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (OSError, json.JSONDecodeError):
        return False


# ---------------------------------------------------------------------------------------------- tensors
def read_upstream_tensors(directory: str | Path, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """All tensors of a released directory, keyed by upstream name (one CPU copy each; dtype kept unless given)."""
    d = Path(directory)
    if (d / INDEX_FILE).is_file():
        weight_map = json.loads((d / INDEX_FILE).read_text(encoding="utf-8"))["weight_map"]
        shards: dict[str, list[str]] = {}
        for key, shard in weight_map.items():
            shards.setdefault(shard, []).append(key)
    elif (d / SINGLE_FILE).is_file():
        shards = {SINGLE_FILE: None}  # type: ignore[dict-item]
    else:
        raise FileNotFoundError(f"{d}: neither {INDEX_FILE} nor {SINGLE_FILE}")
    out: dict[str, Tensor] = {}
    for shard, keys in tqdm(sorted(shards.items()), desc="reading shards", disable=len(shards) < 3):
        if not (d / shard).is_file():
            raise FileNotFoundError(f"{d / INDEX_FILE} lists shard {shard}, which does not exist")
        with safe_open(str(d / shard), framework="pt") as fh:
            present = set(fh.keys())
            absent = sorted(set(keys or ()) - present)
            if absent:
                raise ValueError(f"{d / shard} lacks tensors its index assigns to it: {absent}")
            for key in keys or sorted(present):
                t = fh.get_tensor(key)
                out[key] = t if dtype is None or not t.is_floating_point() else t.to(dtype)
    return out


def to_s2train(
    tensors: dict[str, Tensor], layout: UpstreamLayout, where: str = "checkpoint"
) -> dict[str, Tensor]:
    """Rename upstream tensors to s2train names (split wq/wk/wv are fused). Unknown or missing keys: one
    ValueError listing all of them."""
    tensors = dict(tensors)
    for key in [k for k in tensors if k.endswith("attention.wq.weight")]:
        prefix = key[: -len("wq.weight")]
        parts = [prefix + f"w{c}.weight" for c in "qkv"]
        if all(p in tensors for p in parts) and prefix + "wqkv.weight" not in tensors:
            tensors[prefix + "wqkv.weight"] = torch.cat([tensors.pop(p) for p in parts])
    pairs = key_pairs(layout)
    expected = {up for up, _ in pairs}
    missing, unknown = sorted(expected - tensors.keys()), sorted(tensors.keys() - expected)
    if missing or unknown:
        raise ValueError(
            f"{where}: does not match the fish_qwen3_omni layout of its config.json "
            f"(layout {layout}).\n  missing keys ({len(missing)}): {missing}\n  unknown keys ({len(unknown)}): {unknown}"
        )
    return {mine: tensors[up] for up, mine in pairs}


def from_s2train(state: dict[str, Tensor], layout: UpstreamLayout) -> dict[str, Tensor]:
    """Inverse of `to_s2train`: upstream names, in upstream order. Raises listing leftover / absent keys."""
    pairs = key_pairs(layout)
    ours = {mine for _, mine in pairs}
    absent, extra = sorted(ours - state.keys()), sorted(state.keys() - ours)
    if absent or extra:
        raise ValueError(f"export: model state does not fit layout {layout}; absent {absent}, extra {extra}")
    return {up: state[mine] for up, mine in pairs}


# ---------------------------------------------------------------------------------------------- model
def _has_qk_norm(attn: nn.Module) -> bool:
    norm = getattr(attn, "q_norm", None)
    return norm is not None and not isinstance(norm, nn.Identity)


def adapt_model(model: DualAR, layout: UpstreamLayout) -> DualAR:
    """Make the module structure of `model` store what `layout` stores (in place; returns `model`).

    Blocks without QK-norm get `nn.Identity` q/k norms (the RMSNorm is not an identity for any weight), and a
    projecting fast AR gets a biased `input_proj` like upstream's `project_in`.
    """
    for part, qk in ((model.slow, layout.slow_qk_norm), (model.fast, layout.fast_qk_norm)):
        for blk in part.layers:
            has = _has_qk_norm(blk.attn)
            if qk and not has:
                raise ValueError("adapt_model: model has no QK-norm but the checkpoint layout has one")
            if not qk and has:
                blk.attn.q_norm, blk.attn.k_norm = nn.Identity(), nn.Identity()
    proj = model.fast.input_proj
    if layout.fast_project_in and isinstance(proj, nn.Linear) and proj.bias is None:
        w = proj.weight
        model.fast.input_proj = nn.Linear(w.shape[1], w.shape[0], bias=True, device=w.device, dtype=w.dtype)
    return model


def layout_of(model: DualAR) -> UpstreamLayout:
    """The layout `model` exports to (QK-norm presence read off the modules)."""
    cfg = model.config
    return UpstreamLayout(
        n_layers=cfg.n_layers, fast_n_layers=cfg.fast_n_layers, tie_embeddings=cfg.tie_embeddings,
        slow_qk_norm=_has_qk_norm(model.slow.layers[0].attn),
        fast_qk_norm=_has_qk_norm(model.fast.layers[0].attn),
        fast_project_in=isinstance(model.fast.input_proj, nn.Linear),
    )  # fmt: skip


def install_upstream_rope(model: nn.Module, device: torch.device | str | None = None) -> None:
    """Give every `RotaryTable` upstream's tables: fp32 frequencies and angles, then (as trained) bf16-rounded.
    s2train's default fp64 angles differ by one bf16 step in ~2% of the S2 Pro entries (from position 64 on).
    Sets `fp32_angles`, so a later `reset()` keeps them."""
    for m in model.modules():
        if isinstance(m, RotaryTable):
            m.fp32_angles = True
            m.reset(device if device is not None else ("cpu" if m.cos_sin.is_meta else None))


def _materialize_buffers(model: DualAR, upstream_rope: bool) -> None:
    """Fill the non-persistent buffers left on the meta device by a meta-built model."""
    for m in model.modules():
        if isinstance(m, RotaryTable):
            m.fp32_angles = m.fp32_angles or upstream_rope
            m.reset("cpu")
    cfg = model.config
    model.codebook_offsets = torch.arange(cfg.num_codebooks) * cfg.codebook_size
    left = [n for n, b in model.named_buffers() if b.is_meta]
    if left:
        raise RuntimeError(f"import_s2pro: buffers {left} were not materialized (a new buffer in DualAR?)")


def _check_shapes(model: nn.Module, state: dict[str, Tensor], where: str) -> None:
    own = model.state_dict()
    bad = [
        f"{k}: file {tuple(v.shape)} vs config {tuple(own[k].shape)}"
        for k, v in state.items()
        if own[k].shape != v.shape
    ]
    if bad:
        raise ValueError(f"{where}: tensor shapes disagree with config.json: {bad}")


def import_s2pro(
    directory: str | Path, dtype: torch.dtype | None = None, upstream_rope: bool = True
) -> tuple[DualAR, DualARConfig, dict[str, Any]]:
    """Load a released S2 Pro directory into a `DualAR` without a second copy of the weights.

    Args:
        directory: holds config.json + safetensors (+ index).
        dtype: cast floating tensors (None keeps the file's dtype, bf16 for the release).
        upstream_rope: use upstream's rotary tables (see `install_upstream_rope`).
    Returns:
        (model in eval mode on CPU, its DualARConfig, meta) with meta = {"config": the raw config.json,
        "layout": UpstreamLayout, "source": str, "num_tensors": int}.
    Raises:
        ValueError: unsupported config, missing/unknown keys (all listed) or shape mismatches.
    """
    d = Path(directory)
    raw = read_upstream_config(d)
    cfg, layout = config_from_upstream(raw, str(d / CONFIG_FILE))
    tensors = read_upstream_tensors(d, dtype)
    state = to_s2train(tensors, layout, str(d))
    with torch.device("meta"):
        model = adapt_model(DualAR(cfg), layout)
    _check_shapes(model, state, str(d))
    model.load_state_dict(state, strict=True, assign=True)
    _materialize_buffers(model, upstream_rope)
    log.info("imported %s: %d tensors, %.2fB params", d, len(state), model.num_params() / 1e9)
    meta = {"config": raw, "layout": layout, "source": str(d), "num_tensors": len(state)}
    return model.eval(), cfg, meta


def load_s2pro_weights(model: DualAR, directory: str | Path, upstream_rope: bool = True) -> DualAR:
    """Load a released directory into an existing `model` (e.g. built from `configs/model/s2pro.yaml` by the
    training module), strictly; adapts its modules first. Raises ValueError listing disagreeing config fields."""
    d = Path(directory)
    cfg, layout = config_from_upstream(read_upstream_config(d), str(d / CONFIG_FILE))
    ignore = {
        "audio_input_dropout",
        "codebook_sizes",
        "dropout",
        "max_seq_len",
        "rope_bf16_tables",
        "rope_fp32_angles",
    }
    mine = model.config.to_dict()
    diff = {k: (mine[k], v) for k, v in cfg.to_dict().items() if k not in ignore and mine.get(k) != v}
    if diff:
        raise ValueError(f"{d}: model config disagrees with config.json as (model, file): {diff}")
    state = to_s2train(read_upstream_tensors(d), layout, str(d))
    adapt_model(model, layout)
    _check_shapes(model, state, str(d))
    model.load_state_dict(state, strict=True)
    if upstream_rope:
        install_upstream_rope(model)
        model.config.rope_fp32_angles = True  # recorded, so the run's exported bundle rebuilds these tables
    return model


def load_s2pro_pretrained(
    directory: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[DualAR, Any, Path | None]:
    """`s2train.bundle.load_pretrained` for a released directory: (model in eval mode, UpstreamTokenizer, codec).

    The codec slot is the directory itself when it holds the released `codec.pth` (`s2train.codec.load_codec`
    reads it through `s2train.codec.upstream`, docs/s2codec.md), else None.
    """
    from s2train.text.upstream_tokenizer import UpstreamTokenizer  # ar stays importable without text

    model, cfg, _ = import_s2pro(directory, dtype)
    tokenizer = UpstreamTokenizer.load(directory)
    if tokenizer.semantic_start != cfg.semantic_start or tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"{directory}: tokenizer {tokenizer!r} does not fit the model config")
    codec = Path(directory) if (Path(directory) / "codec.pth").is_file() else None
    return model.to(device).eval(), tokenizer, codec


# ---------------------------------------------------------------------------------------------- export
def parse_size(size: int | str) -> int:
    """Bytes from an int or a string like "5GB", "500MB", "2GiB" (GB = 10**9, as HF shards)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", str(size), re.IGNORECASE)
    if not m:
        raise ValueError(f"shard_size={size!r}: use bytes or a string like '5GB'")
    unit = (m.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}[unit]
    return int(float(m.group(1)) * scale)


def _token_ids(tokenizer_dir: Path) -> dict[str, int]:
    """eos / pad / audio-pad ids for config.json, read from a tokenizer.json when one is there."""
    path = tokenizer_dir / "tokenizer.json"
    if not path.is_file():
        return {}
    vocab = {
        t["content"]: t["id"] for t in json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
    }
    names = {"eos_token_id": "<|im_end|>", "pad_token_id": "<|pad|>", "audio_pad_token_id": "<|audio_pad|>"}
    return {key: vocab[tok] for key, tok in names.items() if tok in vocab}


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def export_s2pro(
    model: DualAR,
    cfg: DualARConfig | None,
    out_dir: str | Path,
    shard_size: int | str = "5GB",
    tokenizer_dir: str | Path | None = None,
    base_config: dict[str, Any] | None = None,
) -> Path:
    """Write `model` in the released layout (config.json, sharded safetensors + index, tokenizer files).

    Args:
        model: a DualAR without LoRA layers (merge them first).
        cfg: its config (None: `model.config`).
        out_dir: created if needed.
        shard_size: max bytes per shard (int or "5GB").
        tokenizer_dir: copy tokenizer.json / tokenizer_config.json / special_tokens_map.json from here and
            take eos/pad/audio-pad ids from it.
        base_config: a config.json dict whose non-model fields are kept (import's `meta["config"]`).
    Returns:
        out_dir.
    """
    cfg = cfg or model.config
    if any("lora_" in n or "base_layer" in n for n, _ in model.named_parameters()):
        raise ValueError("export_s2pro: model still holds LoRA layers; merge them first")
    if cfg.to_dict() != model.config.to_dict():
        raise ValueError("export_s2pro: cfg differs from model.config")
    layout = layout_of(model)
    state = dict(model.state_dict())
    if layout.fast_project_in and "fast.input_proj.bias" not in state:
        w = state["fast.input_proj.weight"]
        state["fast.input_proj.bias"] = torch.zeros(
            w.shape[0], dtype=w.dtype
        )  # upstream's project_in has one
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in from_s2train(state, layout).items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    limit, shards, size = parse_size(shard_size), [[]], 0
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    weight_map = {}
    for i, keys in enumerate(tqdm(shards, desc="writing shards", disable=len(shards) < 3)):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        # Write-then-rename: imported tensors may still be memory-mapped from the files being replaced.
        save_file({k: tensors[k] for k in keys}, str(out / f".{name}.tmp"), metadata={"format": "pt"})
        os.replace(out / f".{name}.tmp", out / name)
        weight_map.update(dict.fromkeys(keys, name))
    for stale in set(out.glob("model-*-of-*.safetensors")) - {out / n for n in weight_map.values()}:
        stale.unlink()  # shards of an earlier export with another shard count
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    _write_text(out / INDEX_FILE, json.dumps(index, indent=2, sort_keys=True) + "\n")
    base = copy.deepcopy(base_config) if base_config else {}
    if tokenizer_dir is not None:
        for key, value in _token_ids(Path(tokenizer_dir)).items():
            base.setdefault(key, value)
    dtype = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    config = upstream_config(cfg, layout, base, dtype)
    _write_text(out / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
    if tokenizer_dir is not None:
        copied = [f for f in TOKENIZER_FILES if (Path(tokenizer_dir) / f).is_file()]
        if "tokenizer.json" not in copied:
            raise FileNotFoundError(f"export_s2pro: no tokenizer.json in tokenizer_dir={tokenizer_dir}")
        for f in copied:
            if (Path(tokenizer_dir) / f).resolve() != (out / f).resolve():
                shutil.copyfile(Path(tokenizer_dir) / f, out / f)
    log.info(
        "exported %d tensors (%.2f GB) in %d shard(s) to %s", len(tensors), total / 1e9, len(shards), out
    )
    return out


if __name__ == "__main__":  # `python -m s2train.ar.upstream export|info ...`
    from s2train.ar.upstream_cli import main

    main()
