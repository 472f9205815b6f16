"""Does a Dual-AR read its text? The text-conditioning gap of the slow AR, teacher-forced.

A text-to-speech model can drive its codebook-0 loss down without reading the transcript at all: speech codes
are predictable from the codes before them (speaker, pitch, the phone being spoken). Such a model babbles in
the right voice at generation time; WER stays near 1. This diagnostic measures how much the transcript helps:

    gap = slow loss with the transcripts shuffled among the items - slow loss with the right transcripts

(nats per codebook-0 token, the same items, codes and prompts otherwise; no voice references). A model that
ignores the text has a gap near 0; one that has learned the text-to-audio alignment has a large gap (most
of its codebook-0 information comes from the text). It is cheap (two teacher-forced passes) and answers,
during pre-training, the question generation answers only after the fact.

    python -m s2train.eval.text_use model=<bundle dir or Lightning .ckpt> codes=<encoded dataset dir> \
        [split=val] [max_items=96] [batch_size=8] [seed=0] [heads=1]

`heads=1` adds a per-layer, per-head table of the slow AR's attention at target frames: the mass on the
transcript's tokens and the alignment-prior loss (`s2train.ar.prior.alignment_prior_loss`, sigma 0.2; about
0.1 for a head that follows the diagonal, about 3 for one spread over the text). It shows whether any head
has learned where in the text the speech is.
"""

from __future__ import annotations

import json
import logging
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from s2train.ar.dual_ar import DualAR
from s2train.ar.losses import selected_slow_logits
from s2train.ar.prior import alignment_prior_loss
from s2train.text.tokenizer import S2Tokenizer

log = logging.getLogger(__name__)


@dataclass
class TextUse:
    """Slow-AR loss (nats per target token) and accuracy with right and with shuffled transcripts."""

    items: int
    tokens: int
    loss_right: float
    loss_shuffled: float
    acc_right: float
    acc_shuffled: float

    @property
    def gap(self) -> float:
        return self.loss_shuffled - self.loss_right

    def as_dict(self) -> dict:
        return {**asdict(self), "gap": self.gap}


def shuffled_texts(texts: Sequence[str], seed: int = 0) -> list[str]:
    """Each item gets the transcript of another item (a seeded derangement; needs >= 2 distinct texts)."""
    if len(set(texts)) < 2:
        raise ValueError(f"need >= 2 distinct transcripts to shuffle, got {len(set(texts))}")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    # rotating a random cycle by one maps every position to another one
    out = list(texts)
    for a, b in zip(order, order[1:] + order[:1]):
        out[a] = texts[b]
    return out


def _on(model: DualAR, batch: dict) -> dict:
    """The collated batch on the model's device (a GPU run's validation callback calls in here)."""
    device = next(model.parameters()).device
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def _slow_loss(
    model: DualAR, tok: S2Tokenizer, rows: Sequence[dict], batch_size: int
) -> tuple[float, float, int]:
    from s2train.data.codes import CodesDataset, collate_prompts

    ds = CodesDataset(
        rows, tok, model.config.num_codebooks, max_tokens=model.config.max_seq_len, ref_prob=0.0
    )
    if len(ds) == 0:
        raise ValueError(f"no usable items among {len(rows)} (skipped: {ds.skipped})")
    total, correct, n = 0.0, 0, 0
    for i in range(0, len(ds), batch_size):
        b = _on(model, collate_prompts([ds[j] for j in range(i, min(i + batch_size, len(ds)))], tok.pad_id))
        hidden = model(b["tokens"], b["codes"], b["audio_mask"], compute_logits=False).hidden
        logits, target = selected_slow_logits(hidden, b["tokens"], b["loss_mask"], model.slow.logits)
        total += float(F.cross_entropy(logits.float(), target, reduction="sum"))
        correct += int((logits.argmax(-1) == target).sum())
        n += target.numel()
    return total / n, correct / n, n


def text_use(
    model: DualAR, tokenizer: S2Tokenizer, rows: Sequence[dict], batch_size: int = 8, seed: int = 0
) -> TextUse:
    """Measure the text-conditioning gap on `rows` (dicts with `id, text, speaker, codes [K][T]`)."""
    was_training = model.training
    model.eval()
    try:
        loss_r, acc_r, n = _slow_loss(model, tokenizer, rows, batch_size)
        wrong = [dict(r, text=t) for r, t in zip(rows, shuffled_texts([r["text"] for r in rows], seed))]
        loss_s, acc_s, _ = _slow_loss(model, tokenizer, wrong, batch_size)
    finally:
        model.train(was_training)
    return TextUse(len(rows), n, loss_r, loss_s, acc_r, acc_s)


@torch.no_grad()
def head_alignment(
    model: DualAR, tok: S2Tokenizer, rows: Sequence[dict], batch_size: int = 8, sigma: float = 0.2
) -> list[list[dict]]:
    """Per slow layer, per query head: `{"mass": ..., "prior_loss": ...}` averaged over batches of `rows`
    (right transcripts, no references). See `alignment_prior_loss` for both figures."""
    from s2train.data.codes import CodesDataset, collate_prompts

    ds = CodesDataset(rows, tok, model.config.num_codebooks, model.config.max_seq_len, ref_prob=0.0)
    layers = [layer.attn for layer in model.slow.layers]
    h, group = model.config.n_heads, model.config.n_heads // model.config.n_kv_heads
    sums = [[[0.0, 0.0] for _ in range(h)] for _ in layers]
    batches = 0
    was_training, flags = model.training, [a.capture for a in layers]
    model.eval()
    try:
        for a in layers:
            a.capture = True
        for i in range(0, len(ds), batch_size):
            b = _on(
                model, collate_prompts([ds[j] for j in range(i, min(i + batch_size, len(ds)))], tok.pad_id)
            )
            model(b["tokens"], b["codes"], b["audio_mask"], compute_logits=False)
            for li, a in enumerate(layers):
                q, k = a.captured
                for hi in range(h):
                    loss, mass = alignment_prior_loss(
                        q[:, hi : hi + 1], k[:, hi // group : hi // group + 1], b, 1, sigma
                    )
                    sums[li][hi][0] += float(mass)
                    sums[li][hi][1] += float(loss)
            batches += 1
    finally:
        for a, f in zip(layers, flags):
            a.capture, a.captured = f, None
        model.train(was_training)
    return [[{"mass": m / batches, "prior_loss": v / batches} for m, v in layer] for layer in sums]


def load_model(source: str | Path) -> tuple[DualAR, S2Tokenizer]:
    """A bundle directory (`s2train.load_pretrained`) or a Lightning checkpoint of `recipe=pretrain/finetune`."""
    p = Path(source)
    if p.is_dir():
        from s2train.bundle import load_pretrained

        model, tok, _ = load_pretrained(p)
        return model, tok
    if p.is_file():
        from s2train.lit.ar import DualARLitModule

        lit = DualARLitModule.load_from_checkpoint(p, map_location="cpu")
        return lit.merged_model(), lit.tokenizer
    raise FileNotFoundError(f"model={source}: no bundle directory or checkpoint file there")


def read_rows(codes_dir: str | Path, split: str, max_items: int | None) -> list[dict]:
    """Rows of one split of an encoded dataset (`python -m s2train.data.encode`), in stored order."""
    from datasets import load_from_disk

    if not Path(codes_dir).exists():
        raise FileNotFoundError(
            f"codes={codes_dir}: no encoded dataset there (python -m s2train.data.encode)"
        )
    ds = load_from_disk(str(codes_dir)).select_columns(["id", "text", "speaker", "split", "codes"])
    rows = [r for r in ds if r["split"] == split]
    if not rows:
        raise ValueError(f"codes={codes_dir}: no rows with split={split!r}")
    return rows[:max_items] if max_items else rows


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point (``python -m s2train.eval.text_use``); prints and returns the figures."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from s2train.cli import exit_on_help

    argv = sys.argv[1:] if argv is None else argv
    exit_on_help(argv, __doc__)
    args = dict(split="val", max_items="96", batch_size="8", seed="0", heads="0")
    for a in argv:
        if "=" not in a:
            raise SystemExit(f"expected key=value arguments, got {a!r}\n{__doc__}")
        k, v = a.split("=", 1)
        if k not in {"model", "codes", *args}:
            raise SystemExit(f"unknown argument {k!r}\n{__doc__}")
        args[k] = v
    if not {"model", "codes"} <= args.keys():
        raise SystemExit(f"model= and codes= are required\n{__doc__}")
    model, tok = load_model(args["model"])
    rows = read_rows(args["codes"], args["split"], int(args["max_items"]) or None)
    res = text_use(model, tok, rows, int(args["batch_size"]), int(args["seed"])).as_dict()
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}))
    print(
        f"slow loss {res['loss_right']:.3f} with the right text, {res['loss_shuffled']:.3f} with shuffled text: "
        f"gap {res['gap']:.3f} nats/token over {res['tokens']} tokens of {res['items']} items"
    )
    if args["heads"] not in ("0", "false", "False"):
        table = head_alignment(model, tok, rows, int(args["batch_size"]))
        res["heads"] = table
        print("slow-AR attention at target frames: mass on the transcript / alignment-prior loss")
        for li, layer in enumerate(table):
            cells = "  ".join(f"h{hi} {c['mass']:.3f}/{c['prior_loss']:.2f}" for hi, c in enumerate(layer))
            print(f"  layer {li}: {cells}")
    return res


if __name__ == "__main__":
    main()
