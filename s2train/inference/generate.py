"""Batched generation through the cached path: the one entry point for CLI, eval, benchmark and RL rollouts.

Layout: left padding (see `s2train.inference.engine`). Each prompt is prefilled once into its first row;
with `num_samples=G` its KV is copied into the G-1 sibling rows (prefix sharing). With a
`VoicePrefixCache`, the prompt's system turn (up to and including its first `<|im_end|>`) is looked up by
content; a hit copies the stored KV and only the rest of the prompt is prefilled.

Classifier-free guidance (a `SamplingParams.cfg_scale` != 1): each prompt's unconditional prompt
(`s2train.text.unconditional_prompt`, derived here from the prompt's `text_mask`) is prefilled into a second
block of rows and decoded in the same forwards (see `s2train.inference.engine`); its system turn hits the
voice-prefix cache the conditional prompt filled.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from s2train.ar.dual_ar import DualAR
from s2train.inference.engine import DecodeCaches, DecodeConsts, DecodeState, decode_frame, prefill
from s2train.inference.graphs import FrameRunner, resolve_mode
from s2train.inference.kv_cache import VoicePrefixCache, prefix_key
from s2train.inference.sampling import SamplingParams, SamplingTensors
from s2train.text.prompt import unconditional_prompt

log = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    """Outputs of one batched request (rows ordered prompt-major: prompt p sample g -> p * G + g).

    Attributes:
        codes: per row LongTensor[K, T_i] (CPU).
        stopped: per row, whether `<|im_end|>` was emitted (False = hit max_frames).
        slow_logprobs: per row [T_i (+1 if stopped)] log-probs of the sampled slow tokens (the frames'
            semantic tokens, then `<|im_end|>`), full-vocabulary softmax at temperature 1 of the conditional
            prompt (also with guidance: the model's own log-probs, not the guided ones); None unless requested.
        fast_logprobs: per row [K, T_i] log-probs of each frame's codes under the fast AR (entry 0 = the fast
            AR's own prediction of q0, as in `DualAR.fast_forward`); None unless requested.
        stats: timings (prefill_s, decode_s, frames) and voice-cache counters.
    """

    codes: list[Tensor]
    stopped: list[bool]
    slow_logprobs: list[Tensor] | None = None
    fast_logprobs: list[Tensor] | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def _unconditional_triple(prompt, i: int) -> tuple[Tensor, Tensor, Tensor]:
    """(tokens, codes, audio_mask) of prompt i's unconditional prompt; needs a `Prompt` with a text_mask."""
    if getattr(prompt, "text_mask", None) is None:
        raise ValueError(
            f"prompt {i}: cfg_scale != 1 needs a Prompt with a text_mask (s2train.text.build_prompt) to derive "
            "its unconditional prompt; got a hand-built prompt or a (tokens, codes, audio_mask) triple"
        )
    return _as_triple(unconditional_prompt(prompt))


def _as_triple(prompt) -> tuple[Tensor, Tensor, Tensor]:
    if hasattr(prompt, "tokens"):
        return prompt.tokens, prompt.codes, prompt.audio_mask
    tokens, codes, audio_mask = prompt
    return tokens, codes, audio_mask


def check_prompt(model: DualAR, tokens: Tensor, codes: Tensor, audio_mask: Tensor, i: int) -> None:
    """Raise ValueError naming prompt i if its shapes or ids do not fit the model."""
    cfg = model.config
    if tokens.dim() != 1 or tokens.numel() == 0:
        raise ValueError(
            f"prompt {i}: tokens must be a non-empty 1-D tensor, got shape {tuple(tokens.shape)}"
        )
    n = tokens.numel()
    if codes.shape != (cfg.num_codebooks, n) or audio_mask.shape != (n,):
        raise ValueError(
            f"prompt {i}: codes {tuple(codes.shape)} / audio_mask {tuple(audio_mask.shape)} must be "
            f"[{cfg.num_codebooks}, {n}] / [{n}]"
        )
    if int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size:
        raise ValueError(f"prompt {i}: token ids outside [0, {cfg.vocab_size})")
    am = audio_mask.bool()
    if am.any() and (int(codes[:, am].min()) < 0 or int(codes[:, am].max()) >= cfg.codebook_size):
        raise ValueError(f"prompt {i}: codes at audio positions outside [0, {cfg.codebook_size})")


@dataclass
class _Run:
    """One request in flight: session buffers plus per-request output buffers."""

    batch: int
    max_frames: int
    state: DecodeState
    runner: FrameRunner
    prefill_s: float
    return_logprobs: bool
    frames: int = 0

    def __post_init__(self) -> None:
        dev, k = self.state.codes.device, self.state.codes.shape[1]
        self.codes = torch.zeros(self.batch, k, self.max_frames, dtype=torch.long, device=dev)
        self.valid = torch.zeros(self.batch, self.max_frames, dtype=torch.bool, device=dev)
        self.slow_lp = torch.zeros(self.batch, self.max_frames, device=dev) if self.return_logprobs else None
        self.fast_lp = (
            torch.zeros(self.batch, k, self.max_frames, device=dev) if self.return_logprobs else None
        )


class InferenceEngine:
    """Holds a model, its stop token, a voice-prefix cache and reusable decode buffers/graphs.

    Args:
        model: a `DualAR` in eval mode (any device/dtype).
        stop_token_id: id of `<|im_end|>`.
        mode: "auto" (CUDA graph on CUDA, eager on CPU), "eager", "cudagraph" or "compile".
        voice_cache: optional `VoicePrefixCache` (repeated voices skip their prefill).
        stop_check_interval: frames between host checks of "all rows done".
        max_sessions: decode buffer sets (one per batch size x rounded cache length x sampling flags) kept
            alive for reuse, least recently used dropped first.
    """

    def __init__(
        self,
        model: DualAR,
        stop_token_id: int,
        mode: str | None = "auto",
        voice_cache: VoicePrefixCache | None = None,
        stop_check_interval: int = 8,
        max_sessions: int = 4,
    ) -> None:
        self.model = model
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.mode = resolve_mode(mode, self.device)
        if not 0 <= stop_token_id < model.config.vocab_size:
            raise ValueError(f"stop_token_id={stop_token_id} outside the vocabulary")
        self.stop_token_id = stop_token_id
        self.voice_cache = voice_cache
        if voice_cache is not None:
            voice_cache.bind(model)
        if stop_check_interval < 1:
            raise ValueError(f"stop_check_interval must be >= 1, got {stop_check_interval}")
        self.stop_check_interval = stop_check_interval
        self._sessions: OrderedDict[tuple, tuple] = OrderedDict()
        self.max_sessions = max(1, max_sessions)

    # -- buffers -------------------------------------------------------------------------------------------
    def _session(self, batch: int, max_len: int, logprobs: bool, sampling: SamplingTensors):
        """Static buffers (+ frame runner) for one (batch, cache length) shape; reused across requests."""
        # Round the cache length up so repeated requests of similar size reuse buffers and graphs.
        max_len = min(-(-max_len // 64) * 64, self.model.config.max_seq_len)
        flags = sampling.flags()
        key = (batch, max_len, logprobs, tuple(sorted(flags.items())))
        if key not in self._sessions:
            cfg = self.model.config
            rows = 2 * batch if sampling.guided else batch  # guidance: unconditional rows after the B rows
            caches = DecodeCaches.allocate(cfg, batch, max_len, self.dtype, self.device, slow_rows=rows)
            dims = (cfg.dim, cfg.num_codebooks, sampling.ras_window)
            state = DecodeState.allocate(batch, *dims, self.dtype, self.device, guided=sampling.guided)
            consts = DecodeConsts.build(self.model, self.stop_token_id, max_len, self.device, logprobs)
            static_sampling = SamplingTensors(
                **{k: v.clone() for k, v in vars(sampling).items() if isinstance(v, Tensor)}, **flags
            )

            def frame() -> Tensor:
                return decode_frame(self.model, state, caches, static_sampling, consts)

            runner = FrameRunner(
                frame, state.tensors(), state.tensors() + caches.tensors(), self.mode, self.device
            )
            self._sessions[key] = (caches, state, consts, static_sampling, runner)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(key)
        caches, state, consts, static_sampling, runner = self._sessions[key]
        for name, value in vars(sampling).items():
            if isinstance(value, Tensor):
                getattr(static_sampling, name).copy_(value)
        return caches, state, runner

    def warmup(
        self,
        batch: int,
        prompt_len: int,
        max_frames: int,
        params: SamplingParams | None = None,
        return_logprobs: bool = False,
    ) -> None:
        """Allocate and capture/compile the session a request of this shape will use (servers, benchmarks).

        `batch` counts rows (prompts x samples); `prompt_len` is the longest prompt.
        """
        params = (params or SamplingParams()).validate(self.model.config.num_codebooks)
        sampling = SamplingTensors.build([params] * batch, self.model.config.num_codebooks, self.device)
        with torch.inference_mode():
            _, _, runner = self._session(batch, prompt_len + max_frames + 1, return_logprobs, sampling)
            runner.prepare()

    # -- prefill -------------------------------------------------------------------------------------------
    def _prefill_row(self, row_cache, tokens: Tensor, codes: Tensor, audio_mask: Tensor, pad: int) -> Tensor:
        """Prefill one prompt into one cache row (with the voice-prefix cache when enabled). Returns [D]."""
        t, c, a = tokens[None], codes[None], audio_mask[None]
        pad_t = torch.tensor([pad], device=self.device)
        n0 = 0
        if self.voice_cache is not None:
            ends = (tokens[:-1] == self.stop_token_id).nonzero()
            n0 = int(ends[0, 0]) + 1 if ends.numel() else 0
            if n0 and not bool(audio_mask[:n0].any()):
                n0 = 0  # no reference voice in this prefix: nothing worth caching
        if n0 == 0:
            return prefill(self.model, t, c, a, row_cache, pad_t, pad)[0]
        key = prefix_key(tokens[:n0], codes[:, :n0], audio_mask[:n0])
        hit = self.voice_cache.get(key)
        if hit is None:
            # Prefill the prefix alone so hits and misses compute the suffix identically.
            prefill(self.model, t[:, :n0], c[:, :, :n0], a[:, :n0], row_cache, pad_t, pad)
            sl = slice(pad, pad + n0)
            self.voice_cache.put(key, [(lc.k[0, :, sl].clone(), lc.v[0, :, sl].clone()) for lc in row_cache])
        else:
            for lc, (k, v) in zip(row_cache, hit):
                lc.k[0, :, pad : pad + n0].copy_(k)
                lc.v[0, :, pad : pad + n0].copy_(v)
        return prefill(self.model, t[:, n0:], c[:, :, n0:], a[:, n0:], row_cache, pad_t, pad + n0)[0]

    # -- generate ------------------------------------------------------------------------------------------
    def _start(self, prompts, params, max_frames, seed, num_samples, return_logprobs, min_frames) -> _Run:
        """Validate everything (before any compute), then prefill into the session buffers."""
        model, cfg = self.model, self.model.config
        if not prompts:
            raise ValueError("generate: no prompts")
        if not isinstance(max_frames, int) or max_frames < 1:
            raise ValueError(f"generate: max_frames must be a positive int, got {max_frames!r}")
        if num_samples < 1:
            raise ValueError(f"generate: num_samples must be >= 1, got {num_samples}")
        if params is None:
            params = SamplingParams()
        plist = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
        if len(plist) != len(prompts):
            raise ValueError(f"generate: {len(plist)} SamplingParams for {len(prompts)} prompts")
        for p in plist:
            p.validate(cfg.num_codebooks)
        triples = [_as_triple(p) for p in prompts]
        for i, (t, c, a) in enumerate(triples):
            check_prompt(model, t, c, a, i)
        g = num_samples
        batch = len(triples) * g
        sampling = SamplingTensors.build(plist, cfg.num_codebooks, self.device).repeat_interleave(g)
        if sampling.guided:  # rows [batch, 2 * batch): the unconditional prompts, same order
            triples = triples + [_unconditional_triple(p, i) for i, p in enumerate(prompts)]
        lmax = max(t.numel() for t, _, _ in triples)
        need = lmax + max_frames + 1
        if need > cfg.max_seq_len:
            raise ValueError(
                f"generate: longest prompt {lmax} + max_frames {max_frames} + 1 = {need} exceeds "
                f"max_seq_len={cfg.max_seq_len}; shorten the text/reference or lower max_frames"
            )
        caches, state, runner = self._session(batch, need, return_logprobs, sampling)
        runner.prepare()  # warm-up/capture before prefill: its cache writes are overwritten below
        if seed is not None:
            # After warm-up/capture, which consume random numbers; graph replays read the reseeded generator.
            torch.manual_seed(seed)

        t0 = time.perf_counter()
        rows = len(triples) * g  # batch, or 2 * batch with guidance
        hidden = torch.zeros(rows, cfg.dim, dtype=self.dtype, device=self.device)
        pads = torch.zeros(rows, dtype=torch.long)
        for p, (tokens, codes, audio_mask) in enumerate(triples):
            pad = lmax - tokens.numel()
            row = p * g
            dev = (tokens.to(self.device), codes.to(self.device), audio_mask.to(self.device).bool())
            hidden[row] = self._prefill_row(caches.row(row), *dev, pad)
            if g > 1:
                caches.copy_row(row, row + 1, row + g)
                hidden[row + 1 : row + g] = hidden[row]
            pads[row : row + g] = pad
        state.reset(hidden, pads.to(self.device), lmax, min_frames)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return _Run(batch, max_frames, state, runner, time.perf_counter() - t0, return_logprobs)

    def _frames(self, run: _Run, chunk: int) -> Iterator[int]:
        """Decode frame by frame into the run's output buffers; yields the frame count every `chunk` frames
        (and at the end). Stops once every row is done (checked at yields only: no per-frame host sync)."""
        state = run.state
        for f in range(run.max_frames):
            run.runner()
            run.codes[:, :, f] = state.codes
            run.valid[:, f] = state.valid
            if run.return_logprobs:
                run.slow_lp[:, f] = state.slow_logprob
                run.fast_lp[:, :, f] = state.fast_logprob
            run.frames = f + 1
            if run.frames % chunk == 0:
                yield run.frames
                if bool(state.done.all()):
                    return
        yield run.frames

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence,
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        max_frames: int = 512,
        seed: int | None = None,
        num_samples: int = 1,
        return_logprobs: bool = False,
        min_frames: int = 0,
    ) -> GenerationResult:
        """Generate frames for a batch of prompts.

        Args:
            prompts: `Prompt`s or (tokens [L], codes [K, L], audio_mask [L]) triples, any lengths.
            params: one `SamplingParams` for all, or one per prompt. Default: `SamplingParams()`.
            max_frames: frames per row at most.
            seed: seeds torch's global RNGs (CPU and CUDA) when given.
            num_samples: G samples per prompt (prefix shared).
            return_logprobs: also return per-token log-probs (RL).
            min_frames: `<|im_end|>` is not sampled before this many frames (benchmarks use max_frames).
        Returns:
            `GenerationResult` (codes per row, prompt-major).
        """
        run = self._start(prompts, params, max_frames, seed, num_samples, return_logprobs, min_frames)
        t1 = time.perf_counter()
        for _ in self._frames(run, self.stop_check_interval):
            pass
        lengths, stopped = run.state.lengths.cpu(), run.state.done.cpu()
        decode_s = time.perf_counter() - t1
        result = GenerationResult(
            codes=[run.codes[b, :, : int(lengths[b])].cpu() for b in range(run.batch)],
            stopped=[bool(s) for s in stopped],
        )
        if return_logprobs:
            n = [int(lengths[b]) for b in range(run.batch)]
            result.slow_logprobs = [run.slow_lp[b, : n[b] + int(stopped[b])].cpu() for b in range(run.batch)]
            result.fast_logprobs = [run.fast_lp[b, :, : n[b]].cpu() for b in range(run.batch)]
        result.stats = {
            "prefill_s": run.prefill_s,
            "decode_s": decode_s,
            "frames": run.frames,
            "batch": run.batch,
        }
        if self.voice_cache is not None:
            result.stats.update(
                voice_cache_hits=self.voice_cache.hits, voice_cache_hit_rate=self.voice_cache.hit_rate
            )
        return result

    def stream(
        self,
        prompt,
        params: SamplingParams | None = None,
        max_frames: int = 512,
        seed: int | None = None,
        chunk_frames: int = 8,
    ) -> Iterator[Tensor]:
        """Generate one prompt, yielding new frames as LongTensor[K, t] (CPU) every `chunk_frames` frames.

        One host sync per chunk (to hand the frames over), none per frame.
        """
        if not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ValueError(f"stream: chunk_frames must be a positive int, got {chunk_frames!r}")
        with torch.inference_mode():
            run = self._start([prompt], params, max_frames, seed, 1, False, 0)
        frames = self._frames(run, chunk_frames)
        sent = 0
        while True:
            # Inference mode only while decoding: the consumer runs in its own grad mode between chunks.
            with torch.inference_mode():
                upto = next(frames, None)
                if upto is None:
                    return
                valid = run.valid[0, sent:upto].cpu()
                new = run.codes[0, :, sent:upto].cpu()[:, valid]
            sent = upto
            if new.shape[1]:
                yield new


def generate(
    model: DualAR,
    prompts: Sequence,
    params: SamplingParams | Sequence[SamplingParams] | None = None,
    max_frames: int = 512,
    seed: int | None = None,
    *,
    stop_token_id: int,
    num_samples: int = 1,
    voice_cache: VoicePrefixCache | None = None,
    mode: str | None = "auto",
    stop_check_interval: int = 8,
    min_frames: int = 0,
) -> list[Tensor]:
    """Generate codes for each prompt (see `InferenceEngine.generate`). Returns LongTensor[K, T_i] per row.

    Builds a throwaway engine; keep an `InferenceEngine` to reuse buffers/graphs across calls.
    """
    engine = InferenceEngine(model, stop_token_id, mode, voice_cache, stop_check_interval)
    return engine.generate(prompts, params, max_frames, seed, num_samples, min_frames=min_frames).codes
