"""Code datasets for Dual-AR training: examples built with the one prompt template, padding, bucketing.

Reads the dataset written by `python -m s2train.data.encode` (a `datasets` dataset saved to disk with columns
`id, text, speaker, language, split, path, codes`, codes an int list `[K][T]`).
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from s2train.data.sampler import BucketBatchSampler, EpochTaggedBatches, MidEpochResume
from s2train.text import IM_END, IM_START, VOICE, Reference, S2Tokenizer, build_prompt, unconditional_prompt
from s2train.text.g2p import normalize_spec

log = logging.getLogger(__name__)

# The text segment build_prompt encodes for the final turn (kept in sync by tests/data/test_codes.py).
_USER_SEGMENT = IM_START + "user\n{text}" + IM_END + "\n" + IM_START + "assistant\n" + VOICE


@dataclass
class SkipReport:
    """Counts of items left out of a split, by reason."""

    wrong_k: int = 0
    too_long: int = 0
    empty: int = 0
    out_of_range: int = 0
    text_rate: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.wrong_k + self.too_long + self.empty + self.out_of_range + self.text_rate


class CodesDataset(Dataset):
    """Training examples (`Prompt` dicts) over utterances with codes.

    Args:
        rows: dicts with `id, text, speaker, codes` (codes `[K][T]`) and optionally `language` (items keep it,
            default "en").
        tokenizer: the S2 tokenizer.
        num_codebooks: expected K; rows with another K are skipped and counted.
        max_tokens: context limit; an item whose prompt is longer is skipped and counted (a reference that
            would overflow it is dropped instead).
        ref_prob: probability of adding another utterance of the same speaker as a voice reference.
        seed: seed of the reference and text-dropout draws (deterministic per (seed, epoch, index)).
        text_dropout: probability of training an item on its unconditional prompt
            (`s2train.text.unconditional_prompt`: the final transcript removed, `text_mask` all False), which
            teaches the model the unconditional branch classifier-free guidance needs. 0 for validation sets.
        frame_rate: code frames per second of audio (the codec's); with ``text_rate`` it turns frames into
            seconds. None: the text-rate check is off.
        text_rate: ``{min_tokens_per_s, max_tokens_per_s, strict}``: items whose transcript has fewer / more
            text tokens per second of audio are skipped and counted (a transcript that does not belong to its
            clip: 5000 characters on 2 s, or half of it missing); with ``strict: true`` any such item is an
            error listing them. None: off. Bounds: ``configs/data/codes_demo.yaml``.

    Indexing with ``(index, epoch)`` (what the train loader's :class:`EpochTaggedBatches` yields) draws the
    reference of that epoch, the same in any worker; a plain ``index`` uses :attr:`epoch` (``set_epoch``).
    """

    def __init__(
        self,
        rows: Sequence[dict],
        tokenizer: S2Tokenizer,
        num_codebooks: int,
        max_tokens: int = 2048,
        ref_prob: float = 0.5,
        seed: int = 0,
        text_dropout: float = 0.0,
        frame_rate: float | None = None,
        text_rate: Mapping[str, float] | None = None,
    ) -> None:
        if not 0.0 <= text_dropout <= 1.0:
            raise ValueError(f"CodesDataset: text_dropout must be in [0, 1], got {text_dropout!r}")
        rate_bounds = None
        if text_rate and frame_rate:
            rate_bounds = (float(text_rate.get("min_tokens_per_s") or 0.0),
                           float(text_rate.get("max_tokens_per_s") or float("inf")))  # fmt: skip
        self.tok = tokenizer
        self.text_dropout = text_dropout
        self.k = num_codebooks
        self.max_tokens = max_tokens
        self.ref_prob = ref_prob
        self.seed = seed
        self.epoch = 0
        self.skipped = SkipReport()
        self.items: list[dict] = []
        self.lengths: list[int] = []
        tokenizer.prefetch_transcripts(str(r.get("text") or "") for r in rows)  # g2p tokenizers only
        for row in rows:
            codes = torch.as_tensor(row["codes"], dtype=torch.long)
            if codes.dim() != 2 or codes.shape[0] != self.k:
                self.skipped.wrong_k += 1
                self._note(row, f"K={codes.shape[0] if codes.dim() == 2 else '?'} != {self.k}")
                continue
            if codes.shape[1] == 0 or not str(row.get("text") or "").strip():
                self.skipped.empty += 1
                self._note(row, "empty text or codes")
                continue
            if int(codes.min()) < 0 or int(codes[0].max()) >= tokenizer.num_semantic:
                self.skipped.out_of_range += 1
                self._note(row, f"codebook-0 codes outside [0, num_semantic={tokenizer.num_semantic})")
                continue
            # Exact prompt length without reference: the user/assistant segment, the frames, <|im_end|>.
            text = tokenizer.transcript(row["text"])
            if rate_bounds is not None:
                rate = len(tokenizer.encode(text)) * frame_rate / codes.shape[1]
                if not rate_bounds[0] <= rate <= rate_bounds[1]:
                    self.skipped.text_rate += 1
                    self._note(row, f"{rate:.1f} text tokens/s outside [{rate_bounds[0]}, {rate_bounds[1]}]")
                    continue
            length = len(tokenizer.encode(_USER_SEGMENT.format(text=text))) + codes.shape[1] + 1
            if length > max_tokens:
                self.skipped.too_long += 1
                self._note(row, f"{length} tokens > max_tokens={max_tokens}")
                continue
            self.items.append(
                {
                    "id": row["id"],
                    "text": row["text"],
                    "speaker": row.get("speaker"),
                    "codes": codes,
                    "language": str(row.get("language") or "en"),
                }
            )
            self.lengths.append(length)
        if rate_bounds is not None and self.skipped.text_rate and text_rate.get("strict"):
            bad = [e for e in self.skipped.examples if "text tokens/s" in e]
            raise ValueError(
                f"CodesDataset: {self.skipped.text_rate} items have a transcript that does not fit their audio "
                f"(data.text_rate.strict=true), e.g. {bad}; fix them or set data.text_rate.strict=false to skip"
            )
        by_speaker: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(self.items):
            by_speaker[str(it["speaker"])].append(i)
        self.by_speaker = dict(by_speaker)
        if self.skipped.total:
            log.warning(
                "CodesDataset: skipped %d of %d items (wrong K: %d, too long: %d, empty: %d, codes out of range: %d, "
                "text tokens/s out of range: %d), e.g. %s",
                self.skipped.total, len(rows), self.skipped.wrong_k, self.skipped.too_long, self.skipped.empty,
                self.skipped.out_of_range, self.skipped.text_rate, self.skipped.examples[:3],
            )  # fmt: skip

    def _note(self, row: dict, why: str) -> None:
        if len(self.skipped.examples) < 10:
            self.skipped.examples.append(f"{row.get('id')}: {why}")

    def set_epoch(self, epoch: int) -> None:
        """Change the reference draws per epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def _reference(self, index: int, rng: random.Random) -> Reference | None:
        item = self.items[index]
        pool = [j for j in self.by_speaker.get(str(item["speaker"]), []) if j != index]
        if not pool or rng.random() >= self.ref_prob:
            return None
        ref = self.items[rng.choice(pool)]
        # System turn: instruction line + "Text:/Speech:" scaffolding (< 64 tokens) + transcript + frames.
        ref_len = ref["codes"].shape[1] + len(self.tok.encode(ref["text"])) + 64
        if self.lengths[index] + ref_len > self.max_tokens:
            return None  # the reference would overflow the context: train this item without one
        return Reference(text=ref["text"], codes=ref["codes"], speaker=0)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Returns the prompt of one item: `tokens [L]`, `codes [K, L]`, `audio_mask [L]`, `loss_mask [L]`,
        `text_mask [L]` (all False when the item's text was dropped)."""
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        item = self.items[index]
        rng = random.Random(hash((self.seed, epoch, index)))
        ref = self._reference(index, rng)
        prompt = build_prompt(
            self.tok,
            item["text"],
            references=[ref] if ref else (),
            target_codes=item["codes"],
            num_codebooks=self.k,
        )
        # Drawn after the reference, so the references do not depend on text_dropout.
        if self.text_dropout > 0 and rng.random() < self.text_dropout:
            prompt = unconditional_prompt(prompt)
        return {
            "tokens": prompt.tokens,
            "codes": prompt.codes,
            "audio_mask": prompt.audio_mask,
            "loss_mask": prompt.loss_mask,
            "text_mask": prompt.text_mask,
        }


def collate_prompts(items: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad prompt dicts into a batch.

    Returns:
        `tokens [B, L]` (pad_id), `codes [B, K, L]` (0), `audio_mask [B, L]`, `loss_mask [B, L]` (False on
        padding), `lengths [B]`; `text_mask [B, L]` when every item has one.
    """
    if not items:
        raise ValueError("collate_prompts: empty batch")
    b = len(items)
    k = items[0]["codes"].shape[0]
    lengths = torch.tensor([it["tokens"].shape[0] for it in items])
    n = int(lengths.max())
    tokens = torch.full((b, n), pad_id, dtype=torch.long)
    codes = torch.zeros(b, k, n, dtype=torch.long)
    audio = torch.zeros(b, n, dtype=torch.bool)
    loss = torch.zeros(b, n, dtype=torch.bool)
    for i, it in enumerate(items):
        m = it["tokens"].shape[0]
        tokens[i, :m] = it["tokens"]
        codes[i, :, :m] = it["codes"]
        audio[i, :m] = it["audio_mask"]
        loss[i, :m] = it["loss_mask"]
    batch = {"tokens": tokens, "codes": codes, "audio_mask": audio, "loss_mask": loss, "lengths": lengths}
    if all(it.get("text_mask") is not None for it in items):
        text = torch.zeros(b, n, dtype=torch.bool)
        for i, it in enumerate(items):
            text[i, : it["tokens"].shape[0]] = it["text_mask"]
        batch["text_mask"] = text
    return batch


class PromptCollator:
    """Picklable collator (DataLoader workers) around `collate_prompts`."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return collate_prompts(items, self.pad_id)


def ensure_tokenizer(
    tokenizer_dir: str | Path,
    texts: Sequence[str],
    vocab_size: int,
    num_semantic: int,
    g2p: str | None = None,
) -> S2Tokenizer:
    """Load the tokenizer in `tokenizer_dir`, training and saving it on `texts` first when missing.

    `g2p` ("espeak", "espeak:<voice>" or None) is the transcript front-end of a newly trained tokenizer; an
    existing tokenizer must have been trained with the same one."""
    g2p = normalize_spec(g2p)
    if S2Tokenizer.exists(tokenizer_dir):
        tok = S2Tokenizer.load(tokenizer_dir)
        if tok.num_semantic != num_semantic:
            raise ValueError(
                f"tokenizer in {tokenizer_dir} has num_semantic={tok.num_semantic}, data needs {num_semantic}; "
                "delete it or point tokenizer_dir elsewhere"
            )
        if tok.g2p != g2p:
            raise ValueError(
                f"tokenizer in {tokenizer_dir} was trained with g2p={tok.g2p!r}, the data config asks for "
                f"g2p={g2p!r}; point tokenizer_dir elsewhere or set data.g2p={tok.g2p}"
            )
        return tok
    log.info(
        "training tokenizer (vocab %d, %d semantic) on %d texts -> %s",
        vocab_size,
        num_semantic,
        len(texts),
        tokenizer_dir,
    )
    tok = S2Tokenizer.train(texts, vocab_size=vocab_size, num_semantic=num_semantic, g2p=g2p)
    tok.save(tokenizer_dir)
    return tok


class CodesDataModule(MidEpochResume, pl.LightningDataModule):
    """Lightning data module over an encoded code dataset.

    Args:
        dataset_dir: output dir of `s2train.data.encode` (a saved `datasets` dataset).
        tokenizer_dir: tokenizer location; trained on the train-split texts at construction if missing
            (cheap, and the LightningModule needs it to size the vocabulary).
        batch_size: items per batch.
        num_codebooks: K of the model; rows with another K are skipped. None: the K of the first row.
        num_semantic: semantic token range (codebook-0 size). None: max code in codebook 0 + 1, rounded up
            to a multiple of 64.
        vocab_size: text BPE size when training the tokenizer.
        g2p: transcript front-end of a tokenizer trained here (`s2train.text.g2p`: "espeak", "espeak:<voice>"
            or None for raw text); an existing tokenizer must match it.
        max_tokens: context guard (items over it are skipped and counted).
        ref_prob: probability of a same-speaker voice reference in a training example.
        text_dropout: probability of a training example (never validation) without its transcript: the
            unconditional prompt (`s2train.text.unconditional_prompt`) that classifier-free guidance
            (`SamplingParams.cfg_scale`) contrasts with at inference. Drawn per (seed, epoch, index).
        train_splits / val_splits: values of the `split` column.
        speakers: keep only these speakers (None: all).
        num_workers, seed: DataLoader workers and sampling seed.
        text_rate: ``{min_tokens_per_s, max_tokens_per_s}`` plausibility bounds of transcript tokens per second
            of audio (:class:`CodesDataset`); the frame rate comes from the dataset's ``summary.json`` (written
            by ``s2train.data.encode``). None, or a dataset without a recorded frame rate: off.
        curriculum_steps: for the first this many optimizer steps the training batches are the shortest
            items sorted by length (frames + transcript tokens), shortest first; bucketed and shuffled after
            (:class:`BucketBatchSampler` ``curriculum_batches``; gradient accumulation counted). 0 = off.

    A run resumed from a mid-epoch checkpoint continues the epoch where it stopped (:class:`MidEpochResume`);
    voice references are drawn per (seed, epoch, index), so they change per epoch and match after a resume.
    """

    def __init__(
        self,
        dataset_dir: str,
        tokenizer_dir: str,
        batch_size: int = 8,
        num_codebooks: int | None = None,
        num_semantic: int | None = None,
        vocab_size: int = 2048,
        max_tokens: int = 2048,
        ref_prob: float = 0.5,
        train_splits: Sequence[str] = ("train",),
        val_splits: Sequence[str] = ("val",),
        speakers: Sequence[str] | None = None,
        num_workers: int = 0,
        seed: int = 0,
        g2p: str | None = None,
        text_dropout: float = 0.0,
        curriculum_steps: int = 0,
        text_rate: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.text_rate = dict(text_rate) if text_rate else None
        if curriculum_steps < 0:
            raise ValueError(f"CodesDataModule: curriculum_steps must be >= 0, got {curriculum_steps!r}")
        self.curriculum_steps = int(curriculum_steps)
        self._curriculum_logged = False
        if not 0.0 <= text_dropout <= 1.0:
            raise ValueError(f"CodesDataModule: text_dropout must be in [0, 1], got {text_dropout!r}")
        self.text_dropout = text_dropout
        self.dataset_dir, self.tokenizer_dir = str(dataset_dir), str(tokenizer_dir)
        self.batch_size, self.max_tokens, self.ref_prob = batch_size, max_tokens, ref_prob
        self.train_splits, self.val_splits = list(train_splits), list(val_splits)
        self.speakers = None if speakers is None else {str(s) for s in speakers}
        self.num_workers, self.seed = num_workers, seed
        self._rows = self._read_rows()
        first = next(iter(self._rows.values()))[0]
        self.num_codebooks = num_codebooks or len(first["codes"])
        if num_semantic is None:
            top = max(max(r["codes"][0]) for rows in self._rows.values() for r in rows if r["codes"])
            num_semantic = ((top + 1 + 63) // 64) * 64
        train_texts = [r["text"] for s in self.train_splits for r in self._rows.get(s, [])]
        self.tokenizer = ensure_tokenizer(self.tokenizer_dir, train_texts, vocab_size, num_semantic, g2p)
        self.codec_dir = self._summary().get("codec")
        self.frame_rate = self._summary().get("frame_rate")
        if self.text_rate and not self.frame_rate:
            log.warning("%s: summary.json records no frame_rate, so the text-rate check is off", dataset_dir)
        self.train_set: CodesDataset | None = None
        self.val_set: CodesDataset | None = None

    def _summary(self) -> dict:
        # `s2train.data.encode` writes summary.json next to the dataset: the codec used and its frame rate.
        summary = Path(self.dataset_dir) / "summary.json"
        if not summary.is_file():
            return {}
        import json

        return {k: v for k, v in json.loads(summary.read_text()).items() if v}

    def _read_rows(self) -> dict[str, list[dict]]:
        from datasets import load_from_disk

        if not Path(self.dataset_dir).exists():
            raise FileNotFoundError(
                f"code dataset {self.dataset_dir} not found; create it with "
                "`python -m s2train.data.encode codec=<dir> manifest=<jsonl> out=<dir>`"
            )
        ds = load_from_disk(self.dataset_dir)
        if hasattr(ds, "keys"):  # a DatasetDict: concatenate its parts, the `split` column decides
            from datasets import concatenate_datasets

            ds = concatenate_datasets([ds[k] for k in ds.keys()])
        missing = {"id", "text", "speaker", "split", "codes"} - set(ds.column_names)
        if missing:
            raise ValueError(
                f"{self.dataset_dir}: missing columns {sorted(missing)} (have {ds.column_names})"
            )
        rows: dict[str, list[dict]] = defaultdict(list)
        columns = ["id", "text", "speaker", "split", "codes"] + (
            ["language"] if "language" in ds.column_names else []
        )
        for r in ds.select_columns(columns):
            if self.speakers is not None and str(r["speaker"]) not in self.speakers:
                continue
            rows[r["split"]].append(r)
        if not any(rows.get(s) for s in self.train_splits):
            raise ValueError(
                f"{self.dataset_dir}: no rows in train splits {self.train_splits} "
                f"(splits present: {sorted(rows)}, speakers filter: {self.speakers})"
            )
        return dict(rows)

    def _make(self, splits: Sequence[str], ref_prob: float, text_dropout: float = 0.0) -> CodesDataset:
        rows = [r for s in splits for r in self._rows.get(s, [])]
        return CodesDataset(
            rows, self.tokenizer, self.num_codebooks, self.max_tokens, ref_prob, self.seed, text_dropout,
            frame_rate=self.frame_rate, text_rate=self.text_rate,
        )  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._make(self.train_splits, self.ref_prob, self.text_dropout)
            self.val_set = self._make(self.val_splits, self.ref_prob)  # validation always keeps its text
            log.info("code data: %d train, %d val items", len(self.train_set), len(self.val_set))
            if len(self.train_set) == 0:
                raise ValueError(f"no usable training items (skipped: {self.train_set.skipped})")

    def _sampler(self, ds: CodesDataset, shuffle: bool, curriculum_batches: int = 0) -> BucketBatchSampler:
        trainer = getattr(self, "trainer", None)
        replicas = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        return BucketBatchSampler(
            ds.lengths, self.batch_size, seed=self.seed, shuffle=shuffle, drop_last=False,
            num_replicas=replicas, rank=rank, curriculum_batches=curriculum_batches,
        )  # fmt: skip

    def _curriculum_batches(self) -> int:
        """`curriculum_steps` in batches per rank (every rank trains one batch per micro-step)."""
        trainer = getattr(self, "trainer", None)
        accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1) if trainer is not None else 1
        return self.curriculum_steps * accumulate

    def train_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        sampler = self._sampler(self.train_set, shuffle=True, curriculum_batches=self._curriculum_batches())
        if sampler.curriculum_batches and not self._curriculum_logged:
            self._curriculum_logged = True
            n = len(sampler)
            log.info(
                "curriculum: the first %d optimizer steps (%d batches per rank; an epoch has %d) take the training "
                "items sorted by length, shortest first (the sweep restarts each epoch); bucketed and shuffled after",
                self.curriculum_steps, sampler.curriculum_batches, n,
            )  # fmt: skip
        # Lightning calls set_epoch(current_epoch) before each epoch; this covers loaders used without it
        batches = EpochTaggedBatches(sampler, self.train_set)
        batches.set_epoch(trainer.current_epoch if trainer is not None else 0)
        self._resume_position(sampler)
        return DataLoader(
            self.train_set, batch_sampler=batches, collate_fn=PromptCollator(self.tokenizer.pad_id),
            num_workers=self.num_workers, persistent_workers=False,
            # own generator: creating the iterator would otherwise draw from the global torch RNG, at another
            # point of the stream in a resumed run
            generator=torch.Generator().manual_seed(self.seed),
        )  # fmt: skip

    def val_dataloader(self) -> DataLoader | list:
        if not len(self.val_set):
            return []
        # plain indices, val_set.epoch stays 0: the same references every validation, also after a resume
        return DataLoader(
            self.val_set, batch_sampler=self._sampler(self.val_set, shuffle=False),
            collate_fn=PromptCollator(self.tokenizer.pad_id), num_workers=self.num_workers,
        )  # fmt: skip


def write_synthetic_codes(
    out_dir: str | Path,
    num_items: int = 24,
    num_codebooks: int = 4,
    codebook_size: int = 64,
    frames: tuple[int, int] = (8, 24),
    speakers: Sequence[str] = ("spk0", "spk1"),
    seed: int = 0,
) -> Path:
    """Write a random code dataset in the `s2train.data.encode` format (tests, benchmarks, smoke runs).

    Every 6th item goes to `val`, the rest to `train`; texts are short sentences with speaker markers and tags.
    """
    from datasets import Dataset as HFDataset

    g = torch.Generator().manual_seed(seed)
    words = ["hello", "there", "quick", "brown", "fox", "speech", "model", "[laugh]", "today", "voice"]
    rows: dict[str, list] = {k: [] for k in ("id", "text", "speaker", "language", "split", "path", "codes")}
    for i in range(num_items):
        n = int(torch.randint(frames[0], frames[1] + 1, (1,), generator=g))
        picks = torch.randint(0, len(words), (int(torch.randint(3, 8, (1,), generator=g)),), generator=g)
        text = "<|speaker:0|>" + " ".join(words[j] for j in picks.tolist()) + "."
        rows["id"].append(f"utt{i:04d}")
        rows["text"].append(text)
        rows["speaker"].append(speakers[i % len(speakers)])
        rows["language"].append("en")
        rows["split"].append("val" if i % 6 == 5 else "train")
        rows["path"].append(f"wavs/utt{i:04d}.wav")
        rows["codes"].append(torch.randint(0, codebook_size, (num_codebooks, n), generator=g).tolist())
    out = Path(out_dir)
    HFDataset.from_dict(rows).save_to_disk(str(out))
    return out
