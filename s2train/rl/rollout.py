"""Group rollouts for GRPO, through the one inference path (``s2train.inference.generate``).

Per prompt: load and encode the reference voice (cached per file), build the prompt with the one template
(``s2train.text.build_prompt``), ask ``generate`` for ``G`` samples (it shares the prompt's prefill across
the group), decode each completion with the codec, and pack (prompt + completion) rows for teacher-forced
re-scoring (:mod:`s2train.rl.logprobs`). There is no decode loop here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from s2train.rl.logprobs import PackedCompletions, pack_completions

log = logging.getLogger(__name__)

_TAG_RE = re.compile(r"\[[^\[\]]*\]")


@dataclass
class Completion:
    """One sampled completion: ``codes [K, T]`` and whether it stopped by itself (emitted ``<|im_end|>``)."""

    codes: Tensor
    ended: bool


@dataclass
class RolloutBatch:
    """Everything one GRPO step needs from its rollouts.

    Attributes:
        items: ``B`` prompt dicts (with ``reference_wav`` / ``untagged_wav`` filled in when available).
        samples: ``B*G`` dicts for the rewards (``wav [1, S]``, ``sample_rate``, ``codes [K, T]``,
            ``num_frames``, ``hit_max_frames``), groups contiguous.
        packed: ``B*G`` rows of (prompt + completion) for teacher-forced log-probs.
        group_size: ``G``.
    """

    items: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    packed: PackedCompletions
    group_size: int

    @property
    def num_frames(self) -> Tensor:
        return self.packed.num_frames


def normalize_generation(out: Any, num_prompts: int, group_size: int) -> list[Completion]:
    """Turn ``generate``'s return value into ``B*G`` :class:`Completion` s (groups contiguous).

    Accepts an ``s2train.inference.GenerationResult`` (``codes`` and ``stopped`` lists, prompt-major), or a
    flat or per-prompt nested list of results, each a tensor ``[K, T]`` or an object / dict with ``codes`` and
    one of ``ended`` / ``stopped`` / ``hit_max_frames`` / ``finished``.
    """
    if hasattr(out, "codes") and hasattr(out, "stopped"):
        out = [{"codes": c, "ended": bool(s)} for c, s in zip(out.codes, out.stopped)]
    results = getattr(out, "results", out)
    flat: list[Any] = []
    for r in results:
        flat.extend(r if isinstance(r, list | tuple) else [r])
    if len(flat) != num_prompts * group_size:
        raise ValueError(
            f"generate returned {len(flat)} results for {num_prompts} prompts x {group_size} samples"
        )
    comps = []
    for r in flat:
        get = r.get if isinstance(r, dict) else (lambda k, r=r: getattr(r, k, None))
        codes = r if isinstance(r, Tensor) else get("codes")
        if codes is None:
            raise TypeError(f"cannot read codes from a generate result of type {type(r).__name__}")
        codes = torch.as_tensor(codes)
        if codes.dim() == 3:  # [1, K, T]
            codes = codes[0]
        ended = get("ended") if not isinstance(r, Tensor) else None
        if ended is None and not isinstance(r, Tensor):
            for key, flip in (("finished", False), ("stopped", False), ("hit_max_frames", True)):
                if get(key) is not None:
                    ended = bool(get(key)) != flip
                    break
        # clone(): generate runs under inference_mode, and inference tensors cannot enter autograd later.
        comps.append(
            Completion(codes=codes.long().cpu().clone(), ended=bool(ended) if ended is not None else True)
        )
    return comps


class RolloutEngine:
    """Builds prompts, samples ``G`` completions per prompt and decodes them.

    Args:
        tokenizer: ``S2Tokenizer``.
        codec: a ``Codec`` (encodes references, decodes completions).
        group_size: ``G``.
        max_frames: frame budget per completion (hitting it is penalized by ``length_penalty``).
        sampling: keyword arguments of the inference sampling parameters (``temperature``, ``top_p``, ...).
        generate_fn: ``fn(model, prompts, params, max_frames=, seed=, num_samples=)``; default: a kept
            ``s2train.inference.InferenceEngine`` (buffers/graphs reused across steps, prefix sharing inside).
        mode: the engine's decode mode (``auto``: CUDA graphs on CUDA, eager on CPU).
        reference_max_seconds: references are cut to this length before encoding.
        untagged_baseline: for prompts with ``[tags]``, also render the text without tags (one sample) so
            the tag reward has a baseline; costs one extra generation per tagged prompt.
    """

    def __init__(
        self,
        tokenizer,
        codec,
        group_size: int,
        max_frames: int,
        sampling: dict[str, Any] | None = None,
        generate_fn: Callable | None = None,
        reference_max_seconds: float = 10.0,
        untagged_baseline: bool = False,
        mode: str = "auto",
    ):
        self.tokenizer, self.codec = tokenizer, codec
        self.group_size, self.max_frames = int(group_size), int(max_frames)
        self.sampling = dict(sampling or {})
        self._generate_fn = generate_fn
        self.reference_max_seconds = reference_max_seconds
        self.untagged_baseline = bool(untagged_baseline)
        self._ref_cache: dict[str, tuple[Tensor, Tensor]] = {}
        self.mode = mode
        self._engine = None

    # ------------------------------------------------------------------ pieces
    def generate_fn(self) -> Callable:
        return self._generate_fn if self._generate_fn is not None else self._engine_generate

    def _engine_generate(self, model, prompts, params, max_frames: int, seed: int, num_samples: int):
        from s2train.inference import InferenceEngine

        if self._engine is None or self._engine.model is not model:
            self._engine = InferenceEngine(model, stop_token_id=self.tokenizer.im_end_id, mode=self.mode)
        return self._engine.generate(
            prompts, params, max_frames=max_frames, seed=seed, num_samples=num_samples
        )

    def sampling_params(self):
        """``s2train.inference.SamplingParams`` built from ``sampling``."""
        from s2train.inference import SamplingParams

        return SamplingParams(**self.sampling)

    @torch.no_grad()
    def reference(self, item: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """``(wav [1, S] at the codec rate, codes [K, T])`` of a prompt's reference voice (cached per path)."""
        if item.get("reference_codes") is not None and item.get("reference_wav") is not None:
            return torch.as_tensor(item["reference_wav"]), torch.as_tensor(item["reference_codes"])
        path = item.get("reference_path")
        if not path:
            raise ValueError(f"prompt {item.get('id', item.get('text', '')[:40])!r} has no reference_path")
        if path not in self._ref_cache:
            from s2train.data.audio import load_audio

            wav = load_audio(path, self.codec.sample_rate, max_seconds=self.reference_max_seconds)
            dev = next(self.codec.parameters()).device
            codes = self.codec.encode(wav.view(1, 1, -1).to(dev))[0].cpu()
            self._ref_cache[path] = (wav.reshape(1, -1), codes)
        return self._ref_cache[path]

    def build(self, item: dict[str, Any], text: str | None = None):
        """The inference prompt for one item (optionally with another text, e.g. tags stripped)."""
        from s2train.text import Reference, build_prompt

        _, codes = self.reference(item)
        ref_text = item.get("reference_text") or " "
        refs = [Reference(text=ref_text, codes=codes, speaker=0)]
        return build_prompt(self.tokenizer, text or item["text"], references=refs)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [K, T]`` -> ``wav [1, S]`` on CPU (empty for ``T == 0``)."""
        if codes.shape[-1] == 0:
            return torch.zeros(1, 0)
        dev = next(self.codec.parameters()).device
        return self.codec.decode(codes[None].to(dev))[0].float().cpu()

    # ------------------------------------------------------------------ the rollout
    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, batch: Sequence[dict[str, Any]], seed: int) -> RolloutBatch:
        """Sample ``G`` completions for each of the ``B`` prompts in ``batch``.

        Args:
            model: the policy (DualAR, adapters enabled).
            batch: prompt dicts (``text``, ``reference_path`` or ``reference_wav`` + ``reference_codes``).
            seed: generation seed (rollouts are reproducible given the model and seed).
        """
        items = [dict(it) for it in batch]
        prompts = [self.build(it) for it in items]
        for it in items:
            wav, _ = self.reference(it)
            it["reference_wav"], it["reference_sample_rate"] = wav, self.codec.sample_rate
        gen = self.generate_fn()
        params = self.sampling_params()
        out = gen(model, prompts, params, max_frames=self.max_frames, seed=seed, num_samples=self.group_size)
        comps = normalize_generation(out, len(prompts), self.group_size)
        if self.untagged_baseline:
            self._add_untagged(model, items, params, seed)

        samples = []
        for c in comps:
            samples.append(
                {
                    "wav": self.decode(c.codes),
                    "sample_rate": self.codec.sample_rate,
                    "codes": c.codes,
                    "num_frames": int(c.codes.shape[-1]),
                    "hit_max_frames": not c.ended,
                }
            )
        g = self.group_size
        rows = [prompts[i // g] for i in range(len(comps))]
        tok = self.tokenizer
        packed = pack_completions(
            [p.tokens for p in rows],
            [p.codes for p in rows],
            [p.audio_mask for p in rows],
            [c.codes for c in comps],
            [c.ended for c in comps],
            semantic_start=tok.semantic_start,
            eos_id=tok.im_end_id,
            pad_id=tok.pad_id,
        )
        return RolloutBatch(items=items, samples=samples, packed=packed, group_size=g)

    def _add_untagged(self, model, items: list[dict[str, Any]], params, seed: int) -> None:
        tagged = [it for it in items if _TAG_RE.search(it["text"])]
        plain = [_TAG_RE.sub(" ", it["text"]).strip() for it in tagged]
        keep = [(it, t) for it, t in zip(tagged, plain) if t]
        if not keep:
            return
        prompts = [self.build(it, text=t) for it, t in keep]
        out = self.generate_fn()(
            model, prompts, params, max_frames=self.max_frames, seed=seed + 1, num_samples=1
        )
        for (it, _), c in zip(keep, normalize_generation(out, len(prompts), 1)):
            it["untagged_wav"], it["untagged_sample_rate"] = self.decode(c.codes), self.codec.sample_rate


__all__ = ["Completion", "RolloutBatch", "RolloutEngine", "normalize_generation"]
