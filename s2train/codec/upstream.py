"""The released S2 Pro codec (``codec.pth``, fish-speech's modified DAC) as an s2train ``Codec``.

``UpstreamDACCodec`` rebuilds the module tree of the released codec so that its ``state_dict`` has exactly
the upstream key names, shapes and buffers; ``load_s2_codec`` reads a ``codec.pth`` into it with strict key
checks, ``save_s2_codec`` writes the same layout back (bit-exact round trip), and

    python -m s2train.codec.upstream convert <codec.pth> <out_dir>

writes an s2train codec folder (``save_codec`` layout) that every ``load_codec`` consumer accepts, e.g.
``python -m s2train.data.encode codec=<out_dir> ...``. Design notes and the key table: ``docs/s2codec.md``; the building blocks live in
``s2train.codec.upstream_modules``.

Signal path (all convs causal, left padding only):

    wav [B, 1, S] --encoder (strides 2, 4, 8, 8; 4-layer windowed transformer in the last stage)-->
    [B, 1024, S / 512] --2 x (strided conv + ConvNeXt)--> [B, 1024, S / 2048]
    --8-layer windowed transformer--> z; semantic VQ (1 x 4096) on z, residual VQ (9 x 1024) on
    z - semantic part  ->  codes [B, 10, S / 2048]

    codes --lookup + sum--> [B, 1024, T] --8-layer transformer--> 2 x (transposed conv + ConvNeXt)
    --> decoder (strides 8, 8, 4, 2) --> tanh --> wav [B, 1, T * 2048]

Inference only: no dropout, no quantizer dropout, no losses; train/eval modes compute the same thing.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from s2train.codec.interface import Codec, save_codec, to_plain
from s2train.codec.upstream_modules import (  # noqa: F401 - TransformerLayer, rope_table: public via this module
    SplitRVQ,
    TransformerLayer,
    UpstreamDecoder,
    UpstreamEncoder,
    WindowedTransformer,
    rope_table,
)

log = logging.getLogger(__name__)

#: Buffers upstream keeps in its state dict although they are pure functions of the config. A checkpoint may
#: omit them; they are then recomputed.
REGENERABLE_BUFFERS = ("freqs_cis", "causal_mask")

#: Keys whose presence marks a file as an upstream codec state dict (after unwrapping).
_SIGNATURE_KEYS = (
    "quantizer.semantic_quantizer.quantizers.0.codebook.weight",
    "quantizer.quantizer.quantizers.0.codebook.weight",
)

_WN_NEW = (".parametrizations.weight.original0", ".parametrizations.weight.original1")
_WN_OLD = (".weight_g", ".weight_v")


# ---------------------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------------------
class UpstreamDACCodec(Codec):
    """fish-speech's modified DAC (the S2 Pro ``codec.pth``) with upstream state-dict keys.

    Defaults are the released sizes (``fish_speech/configs/modded_dac_vq.yaml``): 44.1 kHz, hop
    ``512 * 4 = 2048`` samples (21.53 frames/s), codebooks ``[4096] + [1024] * 9``.

    Args:
        sample_rate: audio rate in Hz.
        encoder_dim: width of the first encoder conv (doubles per stage).
        encoder_rates: encoder strides.
        decoder_dim: width of the first decoder conv (halves per stage).
        decoder_rates: decoder upsampling factors (product must equal the encoder's).
        latent_dim: encoder output width (``None``: ``encoder_dim * 2 ** len(encoder_rates)``).
        encoder_transformer_layers: transformer layers after each encoder stage (0: none). A stage of width
            ``d`` gets ``d // head_dim`` heads and a ``3 d`` SwiGLU (upstream writes ``d // 64`` with
            ``head_dim = 64``).
        encoder_window: attention window of the encoder transformers (frames at ``sample_rate / 512``).
        encoder_block_size: position-table length of the encoder transformers.
        n_codebooks: residual codebooks after the semantic one.
        codebook_size: entries per residual codebook.
        semantic_codebook_size: entries of the semantic codebook (codebook 0).
        codebook_dim: factorized lookup dimension.
        downsample_factor: strides of the quantizer's conv + ConvNeXt downsampling stages.
        rvq_layers / rvq_dim / rvq_heads / rvq_hidden / rvq_window / rvq_block_size: the pre- and
            post-quantizer transformers (``input_proj`` / ``output_proj`` exist only if
            ``rvq_dim != latent_dim``).
        rvq_kv_heads: key/value heads of those transformers (``None``: ``rvq_heads``).
        head_dim: attention head size of all transformers.
        rope_base: RoPE base.
        norm_eps: RMSNorm epsilon.
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        encoder_dim: int = 64,
        encoder_rates: Sequence[int] = (2, 4, 8, 8),
        decoder_dim: int = 1536,
        decoder_rates: Sequence[int] = (8, 8, 4, 2),
        latent_dim: int | None = None,
        encoder_transformer_layers: Sequence[int] = (0, 0, 0, 4),
        encoder_window: int | None = 512,
        encoder_block_size: int = 16384,
        n_codebooks: int = 9,
        codebook_size: int = 1024,
        semantic_codebook_size: int = 4096,
        codebook_dim: int = 8,
        downsample_factor: Sequence[int] = (2, 2),
        rvq_layers: int = 8,
        rvq_dim: int = 1024,
        rvq_heads: int = 16,
        rvq_hidden: int = 3072,
        rvq_window: int | None = 128,
        rvq_block_size: int = 4096,
        rvq_kv_heads: int | None = None,
        head_dim: int = 64,
        rope_base: float = 10000,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.config = to_plain({k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if len(encoder_transformer_layers) != len(encoder_rates):
            raise ValueError(
                f"encoder_transformer_layers has {len(encoder_transformer_layers)} entries for "
                f"{len(encoder_rates)} encoder_rates"
            )
        if math.prod(encoder_rates) != math.prod(decoder_rates):
            raise ValueError(
                f"decoder_rates {list(decoder_rates)} upsample by {math.prod(decoder_rates)} but "
                f"encoder_rates {list(encoder_rates)} downsample by {math.prod(encoder_rates)}"
            )
        latent = encoder_dim * 2 ** len(encoder_rates) if latent_dim is None else latent_dim
        self._sample_rate = int(sample_rate)
        self._hop = math.prod(encoder_rates) * math.prod(downsample_factor)
        self._sizes = [int(semantic_codebook_size)] + [int(codebook_size)] * int(n_codebooks)

        transformers: list[nn.Module | None] = []
        width = encoder_dim
        for n_layers in encoder_transformer_layers:
            width *= 2
            if n_layers == 0:
                transformers.append(None)
                continue
            heads = width // head_dim
            if heads < 1:
                raise ValueError(f"encoder stage of width {width} has no attention head of size {head_dim}")
            transformers.append(
                WindowedTransformer(
                    width, width, n_layers, heads, head_dim, 3 * width, encoder_window, encoder_block_size,
                    rope_base, norm_eps,
                )
            )  # fmt: skip
        self.encoder = UpstreamEncoder(encoder_dim, encoder_rates, latent, transformers)

        def rvq_transformer() -> nn.Module:
            if rvq_layers == 0:
                return nn.Identity()
            return WindowedTransformer(
                latent, rvq_dim, rvq_layers, rvq_heads, head_dim, rvq_hidden, rvq_window, rvq_block_size,
                rope_base, norm_eps, rvq_kv_heads,
            )  # fmt: skip

        self.quantizer = SplitRVQ(
            latent, n_codebooks, codebook_size, semantic_codebook_size, codebook_dim, downsample_factor,
            rvq_transformer,
        )  # fmt: skip
        self.decoder = UpstreamDecoder(latent, decoder_dim, decoder_rates)

    # --- Codec interface ----------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def hop_length(self) -> int:
        """Samples per code frame: ``prod(encoder_rates) * prod(downsample_factor)`` (2048 released)."""
        return self._hop

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self._sizes)

    @property
    def delay(self) -> int:
        return 0

    @property
    def weight_dtype(self) -> torch.dtype:
        """Dtype the forward runs in (that of the first encoder conv)."""
        return self.encoder.block[0].conv.bias.dtype

    def _prepare(self, wav: torch.Tensor, sample_rate: int | None) -> torch.Tensor:
        # Upstream pads on the right to whole code frames (4 * 512 samples), as the shared check does.
        return super()._prepare(wav, sample_rate).to(self.weight_dtype)

    # check_codes: the shared one (upstream clamps too-large codes to ``size - 1``; here they are an error).

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Encode audio to codes.

        Args:
            wav: [B, 1, S] at ``self.sample_rate`` (padded on the right to whole frames).
            sample_rate: optional check; must equal ``self.sample_rate``.

        Returns:
            codes: [B, K, max(1, ceil(S / hop))] int64; row 0 is the semantic codebook.
        """
        x = self._prepare(wav, sample_rate)
        return self.quantizer.encode(self.encoder(x)).long()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode codes to audio.

        Args:
            codes: [B, K', T] with 1 <= K' <= K (fewer codebooks give a coarser decode).

        Returns:
            wav: [B, 1, T * hop] float32 in [-1, 1].
        """
        self.check_codes(codes)
        return self.decoder(self.quantizer.decode(codes.long())).float()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Resynthesis ``decode(encode(wav))``. Args: wav: [B, 1, S]. Returns: [B, 1, ceil(S / hop) * hop]."""
        return self.decode(self.encode(wav))

    def stream_decoder(self) -> PrefixStreamDecoder:
        """A ``PrefixStreamDecoder`` (re-decodes the whole prefix per push: exact, but O(T^2))."""
        return PrefixStreamDecoder(self)


class PrefixStreamDecoder:
    """Frame-by-frame decoding for ``UpstreamDACCodec`` by re-decoding every frame received so far.

    The decode path is causal, so ``decode(codes[..., :t])`` already holds the final audio of frames ``< t``;
    each ``push`` returns the newly completed part. The result equals ``decode`` of the whole sequence up to
    float rounding, without per-module state, at O(T^2) cost and for at most the post-quantizer transformer's
    ``block_size`` frames (4096, about 190 s released). Meant for previews, not real-time use.

    Args:
        codec: the ``UpstreamDACCodec``.
    """

    def __init__(self, codec: UpstreamDACCodec):
        self.codec = codec
        self.codes: torch.Tensor | None = None

    @property
    def frames(self) -> int:
        """Frames pushed since the last reset."""
        return 0 if self.codes is None else self.codes.shape[-1]

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Args: codes: [B, K, t] of the next ``t >= 1`` frames (same B and K every push).

        Returns: wav [B, 1, t * hop].
        """
        self.codec.check_codes(codes)
        if self.codes is not None and self.codes.shape[:2] != codes.shape[:2]:
            raise ValueError(
                f"push got codes {tuple(codes.shape)} after {tuple(self.codes.shape)}: B and K differ"
            )
        start = self.frames * self.codec.hop_length
        self.codes = codes.long() if self.codes is None else torch.cat([self.codes, codes.long()], dim=-1)
        return self.codec.decode(self.codes)[..., start:]

    def reset(self) -> None:
        """Forget all frames (start a new utterance)."""
        self.codes = None


# ---------------------------------------------------------------------------------------------------------
# codec.pth I/O
# ---------------------------------------------------------------------------------------------------------
def _read_pth(path: Path) -> dict:
    """``torch.load`` with ``weights_only=True`` (memory-mapped when the file format allows it)."""
    if not path.is_file():
        raise FileNotFoundError(f"codec checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err) and "zip" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _unwrap(obj, source: str) -> dict[str, torch.Tensor]:
    """``{key: tensor}`` from a raw state dict, a ``{"state_dict": ...}`` wrapper or ``generator.`` keys."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected a state dict (mapping), got {type(obj).__name__}")
    if isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if any(str(k).startswith("generator.") for k in obj):
        dropped = sum(not str(k).startswith("generator.") for k in obj)
        if dropped:
            log.info(
                "%s: keeping the generator.* entries, dropping %d others (e.g. discriminators)",
                source,
                dropped,
            )
        obj = {str(k)[len("generator.") :]: v for k, v in obj.items() if str(k).startswith("generator.")}
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{source}: entries that are not tensors: {not_tensors[:20]}")
    return dict(obj)


def _swap_weight_norm_spelling(key: str) -> str | None:
    """``x.weight_g`` <-> ``x.parametrizations.weight.original0`` (same for ``_v`` / ``original1``)."""
    for new, old in zip(_WN_NEW, _WN_OLD):
        if key.endswith(new):
            return key[: -len(new)] + old
        if key.endswith(old):
            return key[: -len(old)] + new
    return None


def _is_regenerable(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in REGENERABLE_BUFFERS


def _key_report(names: list[str]) -> str:
    head = ", ".join(names[:20])
    return f"{len(names)}: {head}{', ...' if len(names) > 20 else ''}"


def _match_state(
    state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str
) -> list[str]:
    """Rename alternate weight-norm spellings in ``state`` in place and check keys and shapes.

    Returns:
        The regenerable buffer keys the file lacks.

    Raises:
        ValueError: listing unexpected keys, missing keys and shape mismatches.
    """
    renamed = 0
    for key in [k for k in state if k not in expected]:
        alt = _swap_weight_norm_spelling(key)
        if alt is not None and alt in expected and alt not in state:
            state[alt] = state.pop(key)
            renamed += 1
    if renamed:
        log.info(
            "%s: read %d weight-norm tensors stored under the other weight_g/original0 spelling",
            source,
            renamed,
        )
    unexpected = sorted(k for k in state if k not in expected)
    missing = sorted(k for k in expected if k not in state and not _is_regenerable(k))
    problems = []
    if unexpected:
        problems.append(f"unexpected keys {_key_report(unexpected)}")
    if missing:
        problems.append(f"missing keys {_key_report(missing)}")
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if shapes:
        problems.append(f"shape mismatches {_key_report(shapes)}")
    if problems:
        raise ValueError(
            f"{source} does not match UpstreamDACCodec (pass config= with the checkpoint's sizes if it is "
            "not the released S2 Pro codec): " + "; ".join(problems)
        )
    return sorted(k for k in expected if k not in state)


def load_s2_codec(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    config: Mapping | None = None,
) -> UpstreamDACCodec:
    """Load a released ``codec.pth`` (fish-speech ``DAC`` state dict) into an ``UpstreamDACCodec``.

    Accepts a raw state dict, a ``{"state_dict": ...}`` wrapper and ``generator.``-prefixed keys (other
    entries are dropped). ``weight_g``/``weight_v`` and ``parametrizations.weight.original0/1`` spellings of
    the same weight-normed conv are both read. The buffers ``freqs_cis`` / ``causal_mask`` may be absent
    (recomputed). Tensors keep their stored dtype unless ``dtype`` is given.

    Args:
        path: the ``codec.pth``.
        device: where the returned model lives.
        dtype: cast the floating-point parameters to this dtype (the bf16 RoPE tables stay as stored).
        config: ``UpstreamDACCodec`` constructor args (default: the released sizes).

    Returns:
        The codec in eval mode.

    Raises:
        ValueError: unknown or missing keys, or shapes that do not fit ``config`` (listing them).
    """
    path = Path(path)
    state = _unwrap(_read_pth(path), str(path))
    with torch.device("meta"):
        codec = UpstreamDACCodec(**dict(config or {}))
    regenerate = _match_state(state, codec.state_dict(), str(path))
    if dtype is not None:
        buffers = {name for name, _ in codec.named_buffers()}
        state = {
            k: v.to(dtype) if v.is_floating_point() and k not in buffers else v for k, v in state.items()
        }
    codec.load_state_dict(state, strict=False, assign=True)
    if regenerate:
        log.info("%s: recomputing %d buffers the file omits (%s)", path, len(regenerate), regenerate[0])
        for module in codec.modules():
            if isinstance(module, WindowedTransformer) and module.freqs_cis.is_meta:
                module.fill_buffers()
    leftover = [name for name, t in [*codec.named_parameters(), *codec.named_buffers()] if t.is_meta]
    if leftover:  # pragma: no cover - guarded by _match_state
        raise RuntimeError(f"{path}: tensors left unloaded: {leftover[:20]}")
    n = sum(p.numel() for p in codec.parameters())
    log.info("loaded %s: %d tensors, %.1fM parameters, %s", path, len(state), n / 1e6, codec.weight_dtype)
    return codec.to(device).eval()


def save_s2_codec(codec: UpstreamDACCodec, path: str | Path) -> Path:
    """Write ``codec.state_dict()`` as a plain upstream-layout ``codec.pth`` (dtypes kept, CPU tensors).

    Args:
        codec: the codec.
        path: output file (parent folders created).

    Returns:
        The path.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in codec.state_dict().items()}, out)
    return out


def is_upstream_codec_file(path: str | Path) -> bool:
    """Whether ``path`` is a torch checkpoint holding an upstream codec state dict (after unwrapping).

    Reads the pickle (memory-mapped for zip checkpoints), never raises for unreadable files.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        state = _unwrap(_read_pth(path), str(path))
    except Exception:  # noqa: BLE001 - any unreadable or foreign file is simply "not a codec.pth"
        return False
    return all(k in state for k in _SIGNATURE_KEYS) and any(k.startswith("encoder.block.0.") for k in state)


def convert(pth: str | Path, out_dir: str | Path, fp16: bool = False, config: Mapping | None = None) -> Path:
    """Load ``pth`` and write it as an s2train codec folder (``save_codec``) for ``load_codec`` consumers.

    Args:
        pth: the ``codec.pth``.
        out_dir: output folder (``config.json`` + ``model.safetensors``).
        fp16: store float16 weights (half the size, rounds fp32 weights; default float32, exact for fp32 and
            bf16 checkpoints).
        config: constructor args when the checkpoint is not the released size.

    Returns:
        The output folder.
    """
    codec = load_s2_codec(pth, config=config)
    return save_codec(codec, out_dir, fp16=fp16)


def _parse_config(text: str | None) -> dict | None:
    """``--config`` value: inline JSON, or the path of a JSON file."""
    if text is None:
        return None
    source = Path(text).read_text() if not text.lstrip().startswith("{") else text
    try:
        config = json.loads(source)
    except json.JSONDecodeError as err:
        raise ValueError(f"--config {text!r}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"--config {text!r}: expected a JSON object of UpstreamDACCodec arguments")
    return config


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m s2train.codec.upstream convert <codec.pth> <out_dir>`` (or ``info <codec.pth>``)."""
    parser = argparse.ArgumentParser(
        prog="python -m s2train.codec.upstream", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="write an s2train codec folder (config.json + model.safetensors)")
    conv.add_argument("pth", help="the released codec.pth")
    conv.add_argument("out_dir", help="output folder")
    conv.add_argument("--fp16", action="store_true", help="store float16 weights (not exact)")
    info = sub.add_parser("info", help="load a codec.pth and report its size")
    info.add_argument("pth")
    for p in (conv, info):
        p.add_argument("--config", help="constructor args as JSON or a .json file (default: released sizes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = _parse_config(args.config)
    if args.command == "convert":
        out = convert(args.pth, args.out_dir, fp16=args.fp16, config=config)
        log.info("wrote %s (load with s2train.codec.load_codec)", out)
    else:
        codec = load_s2_codec(args.pth, config=config)
        n = sum(p.numel() for p in codec.parameters())
        log.info(
            "%s: %d keys, %d parameters, %s, %d Hz, hop %d, codebooks %s",
            args.pth, len(codec.state_dict()), n, codec.weight_dtype, codec.sample_rate, codec.hop_length,
            codec.codebook_sizes,
        )  # fmt: skip


if __name__ == "__main__":
    main()
