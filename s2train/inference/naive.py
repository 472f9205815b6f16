"""Reference decoder without caches: recomputes the full slow and fast forwards for every token.

Slow and simple on purpose: the parity tests and the benchmark baseline compare the cached path against it.
It uses the same sampling functions, so greedy outputs must match the cached path token for token, also
with classifier-free guidance (the unconditional prompt recomputed alongside, its logits combined by `guide`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from s2train.ar.dual_ar import DualAR
from s2train.inference.generate import _as_triple, _unconditional_triple, check_prompt
from s2train.inference.sampling import SamplingParams, SamplingTensors, guide, repetition_aware, sample


@torch.inference_mode()
def naive_generate(
    model: DualAR,
    prompts: Sequence,
    params: SamplingParams | None = None,
    max_frames: int = 512,
    seed: int | None = None,
    *,
    stop_token_id: int,
    min_frames: int = 0,
) -> list[Tensor]:
    """Generate each prompt alone with full recomputation. Returns LongTensor[K, T_i] per prompt.

    With `params.cfg_scale` != 1 each step also runs the uncached forward of the unconditional prompt (plus
    the frames so far) and samples from the guided slow logits; the fast AR sees the conditional hidden state.
    """
    cfg = model.config
    params = (params or SamplingParams()).validate(cfg.num_codebooks)
    device = next(model.parameters()).device
    if seed is not None:
        torch.manual_seed(seed)
    sp = SamplingTensors.build([params], cfg.num_codebooks, device)
    allowed = torch.cat(
        [
            torch.arange(cfg.semantic_start, cfg.semantic_start + cfg.num_semantic),
            torch.tensor([stop_token_id]),
        ]
    ).to(device)
    stop_index = allowed.numel() - 1
    k = cfg.num_codebooks
    cb_invalid = None
    if cfg.codebook_sizes is not None:
        cb_invalid = (
            torch.arange(cfg.codebook_size, device=device)[None]
            >= torch.tensor(cfg.codebook_sizes, device=device)[:, None]
        )
    outputs = []
    for i, prompt in enumerate(prompts):
        tokens, codes, audio = _as_triple(prompt)
        check_prompt(model, tokens, codes, audio, i)
        seqs = [(tokens, codes, audio)]
        if sp.guided:
            seqs.append(_unconditional_triple(prompt, i))
        seqs = [(t.to(device), c.to(device), a.to(device).bool()) for t, c, a in seqs]
        window = torch.full((1, max(sp.ras_window, 1)), -1, dtype=torch.long, device=device)
        frames = []
        for step in range(max_frames):
            hiddens = [
                model(t[None], c[None], a[None], compute_logits=False).hidden[:, -1] for t, c, a in seqs
            ]
            row_logits = [
                model.slow.range_logits(h, cfg.semantic_start, cfg.num_semantic, allowed[-1:])
                for h in hiddens
            ]
            slow_logits = guide(*row_logits, sp.cfg_scale) if sp.guided else row_logits[0]
            hidden = hiddens[0]
            if step < min_frames:
                slow_logits[:, stop_index] = float("-inf")
            idx, full = sample(slow_logits, sp.temperature, sp.top_k, sp.top_p, sp.greedy)
            if sp.ras_window > 0 and not sp.greedy_only:
                idx = repetition_aware(idx, full, window, sp.ras_threshold, sp.greedy)
            if int(idx) == stop_index:
                break
            qs = [idx]
            for j in range(1, k):
                x = model.fast_inputs(hidden, torch.stack(qs, dim=1))
                logits = model.fast(x, torch.arange(j + 1, device=device))[:, -1]
                if cb_invalid is not None:
                    logits = logits.masked_fill(cb_invalid[j], float("-inf"))
                qj, _ = sample(
                    logits, sp.fast_temperature[:, j], sp.fast_top_k[:, j], sp.fast_top_p[:, j], sp.greedy
                )
                qs.append(qj)
            frame = torch.stack(qs, dim=1)  # [1, K]
            window[0, step % window.shape[1]] = frame[0, 0]
            frames.append(frame[0])
            one = torch.ones(1, dtype=torch.bool, device=device)
            seqs = [
                (torch.cat([t, allowed[idx]]), torch.cat([c, frame.t()], dim=1), torch.cat([a, one]))
                for t, c, a in seqs
            ]
        outputs.append(torch.stack(frames, dim=1).cpu() if frames else torch.zeros(k, 0, dtype=torch.long))
    return outputs
