"""Code dataset, collator and CodesDataModule on a synthetic encoded dataset."""

import pytest
import torch
from datasets import Dataset as HFDataset

from s2train.data.codes import CodesDataModule, CodesDataset, collate_prompts, write_synthetic_codes
from s2train.text import S2Tokenizer, render_prompt, unconditional_prompt
from s2train.text.prompt import Prompt


@pytest.fixture(scope="module")
def codes_dir(tmp_path_factory):
    return write_synthetic_codes(tmp_path_factory.mktemp("codes") / "ds", num_items=24, num_codebooks=4)


def test_datamodule_trains_tokenizer_and_batches(codes_dir, tmp_path):
    dm = CodesDataModule(str(codes_dir), str(tmp_path / "tok"), batch_size=4, num_semantic=64, ref_prob=1.0)
    assert S2Tokenizer.exists(tmp_path / "tok")
    assert dm.tokenizer.num_semantic == 64
    dm.setup("fit")
    assert len(dm.train_set) == 20 and len(dm.val_set) == 4
    batch = next(iter(dm.train_dataloader()))
    b, n = batch["tokens"].shape
    assert b == 4 and batch["codes"].shape == (4, 4, n)
    for i in range(b):
        m = int(batch["lengths"][i])
        assert (batch["tokens"][i, m:] == dm.tokenizer.pad_id).all()
        assert not batch["loss_mask"][i, m:].any() and not batch["audio_mask"][i, m:].any()
        # ref_prob=1: every item carries a same-speaker reference in the system turn.
        p = Prompt(
            batch["tokens"][i, :m],
            batch["codes"][i, :, :m],
            batch["audio_mask"][i, :m],
            batch["loss_mask"][i, :m],
        )
        assert render_prompt(dm.tokenizer, p).startswith("<|im_start|>system\n")
    # A second module reuses the saved tokenizer.
    dm2 = CodesDataModule(str(codes_dir), str(tmp_path / "tok"), batch_size=4, num_semantic=64)
    assert dm2.tokenizer.vocab_size == dm.tokenizer.vocab_size
    with pytest.raises(ValueError, match="num_semantic"):
        CodesDataModule(str(codes_dir), str(tmp_path / "tok"), batch_size=4, num_semantic=128)


def test_reference_is_same_speaker(codes_dir, tmp_path):
    dm = CodesDataModule(str(codes_dir), str(tmp_path / "tok"), batch_size=2, num_semantic=64, ref_prob=1.0)
    dm.setup()
    ds = dm.train_set
    for i in range(len(ds)):
        ex = ds[i]
        own = ds.items[i]["codes"]
        ref_frames = ex["codes"][:, ex["audio_mask"] & ~ex["loss_mask"]]
        assert ref_frames.shape[1] > 0
        # The reference must be some other item of the same speaker.
        same = [j for j in ds.by_speaker[str(ds.items[i]["speaker"])] if j != i]
        assert any(torch.equal(ds.items[j]["codes"], ref_frames) for j in same)
        assert torch.equal(ex["codes"][:, ex["loss_mask"] & ex["audio_mask"]], own)


def test_skips_wrong_k_and_too_long(tmp_path):
    tok = S2Tokenizer.train(["hello world"] * 4, vocab_size=260, num_semantic=16)
    rows = [
        {"id": "ok", "text": "hello", "speaker": "a", "codes": [[1, 2, 3]] * 4},
        {"id": "k3", "text": "hello", "speaker": "a", "codes": [[1, 2, 3]] * 3},
        {"id": "long", "text": "hello", "speaker": "a", "codes": [[1] * 200] * 4},
        {"id": "empty", "text": " ", "speaker": "a", "codes": [[1]] * 4},
        {"id": "range", "text": "hello", "speaker": "a", "codes": [[16, 2]] * 4},
    ]
    ds = CodesDataset(rows, tok, num_codebooks=4, max_tokens=100, ref_prob=0.0)
    assert len(ds) == 1
    assert (ds.skipped.wrong_k, ds.skipped.too_long, ds.skipped.empty, ds.skipped.out_of_range) == (
        1,
        1,
        1,
        1,
    )
    assert any("K=3" in e for e in ds.skipped.examples)


def test_collate_pads():
    items = [
        {"tokens": torch.tensor([5, 6, 7]), "codes": torch.ones(2, 3, dtype=torch.long),
         "audio_mask": torch.tensor([0, 1, 1]).bool(), "loss_mask": torch.tensor([0, 1, 1]).bool()},
        {"tokens": torch.tensor([5]), "codes": torch.ones(2, 1, dtype=torch.long),
         "audio_mask": torch.tensor([1]).bool(), "loss_mask": torch.tensor([0]).bool()},
    ]  # fmt: skip
    b = collate_prompts(items, pad_id=99)
    assert b["tokens"].tolist() == [[5, 6, 7], [5, 99, 99]]
    assert b["codes"][1, :, 1:].sum() == 0 and b["lengths"].tolist() == [3, 1]
    assert b["audio_mask"].tolist() == [[False, True, True], [True, False, False]]


def test_missing_dataset_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="s2train.data.encode"):
        CodesDataModule(str(tmp_path / "nope"), str(tmp_path / "tok"))
    HFDataset.from_dict({"id": ["a"], "text": ["t"]}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="missing columns"):
        CodesDataModule(str(tmp_path / "bad"), str(tmp_path / "tok"))


def test_lengths_are_exact_without_reference(codes_dir, tmp_path):
    dm = CodesDataModule(str(codes_dir), str(tmp_path / "tok"), batch_size=2, num_semantic=64, ref_prob=0.0)
    dm.setup()
    ds = dm.train_set
    assert [len(ds[i]["tokens"]) for i in range(len(ds))] == ds.lengths


def test_datamodule_resumes_mid_epoch_and_tags_epochs(codes_dir, tmp_path):
    dm = CodesDataModule(str(codes_dir), str(tmp_path / "tok"), batch_size=4, num_semantic=64, ref_prob=1.0)
    dm.setup()
    loader = dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(1)  # what Lightning calls at each epoch start
    full = list(loader.batch_sampler)
    assert len(full) == 5 and all(e == 1 for batch in full for _, e in batch)
    assert dm.train_set.epoch == 1  # plain-index access follows too

    dm.load_state_dict({"epoch": 0, "batches_done": 2})  # mid-epoch checkpoint of epoch 0
    resumed = dm.train_dataloader()
    epoch0 = list(resumed.batch_sampler)
    assert len(epoch0) == 3 and len(resumed) == 5
    assert [b["tokens"].shape[0] for b in resumed] == [4] * 5  # the skip was one-shot
    assert epoch0 != full[2:]  # another epoch: another order

    # references are drawn per (seed, epoch, index): some item gets another reference in another epoch
    ds = dm.train_set
    assert any(not torch.equal(ds[(i, 0)]["codes"], ds[(i, 1)]["codes"]) for i in range(len(ds)))
    ds.set_epoch(1)
    assert all(torch.equal(ds[(i, 1)]["codes"], ds[i]["codes"]) for i in range(len(ds)))  # plain: ds.epoch


def test_text_dropout_builds_the_unconditional_prompt_on_train_items_only(codes_dir, tmp_path):
    kw = dict(batch_size=4, num_semantic=64, ref_prob=0.5, seed=3)
    base = CodesDataModule(str(codes_dir), str(tmp_path / "tok"), **kw)
    always = CodesDataModule(str(codes_dir), str(tmp_path / "tok"), text_dropout=1.0, **kw)
    half = CodesDataModule(str(codes_dir), str(tmp_path / "tok"), text_dropout=0.5, **kw)
    for dm in (base, always, half):
        dm.setup()
    n = len(base.train_set)
    for i in range(n):
        kept, dropped = base.train_set[(i, 0)], always.train_set[(i, 0)]
        assert kept["text_mask"].any()
        # p=1: every item is the unconditional prompt of the item p=0 builds (same reference draw)
        p = Prompt(kept["tokens"], kept["codes"], kept["audio_mask"], kept["loss_mask"], kept["text_mask"])
        u = unconditional_prompt(p)
        assert not dropped["text_mask"].any()
        for key in ("tokens", "codes", "audio_mask", "loss_mask"):
            assert torch.equal(dropped[key], getattr(u, key)), key
    # validation never drops; p=0 is the unchanged dataset
    for i in range(len(always.val_set)):
        assert torch.equal(always.val_set[i]["tokens"], base.val_set[i]["tokens"])
        assert always.val_set[i]["text_mask"].any()
    assert always.val_set.text_dropout == 0.0 and base.train_set.text_dropout == 0.0
    # p=0.5: a reproducible per-(seed, epoch, index) mix, another one in another epoch
    drops = [[not half.train_set[(i, e)]["text_mask"].any() for i in range(n)] for e in (0, 1)]
    assert 0 < sum(drops[0]) < n and drops[0] != drops[1]
    assert drops[0] == [not half.train_set[(i, 0)]["text_mask"].any() for i in range(n)]
    # the batch carries the all-False text_mask rows
    batch = next(iter(always.train_dataloader()))
    assert not batch["text_mask"].any()
    with pytest.raises(ValueError, match="text_dropout"):
        CodesDataModule(str(codes_dir), str(tmp_path / "tok"), text_dropout=1.5, **kw)
