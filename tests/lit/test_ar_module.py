"""Dual-AR losses (hand-made cases) and DualARLitModule (fast_dev_run, overfit, init_from)."""

import math

import pytest
import pytorch_lightning as pl
import torch

from s2train.ar import DualAR
from s2train.ar.losses import dual_ar_loss, fast_loss, fast_targets, fast_weights, slow_loss
from s2train.data.codes import CodesDataModule, write_synthetic_codes
from s2train.lit.ar import DualARLitModule, param_groups
from s2train.lit.schedules import warmup_cosine, warmup_stable_decay


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Single-threaded tiny models (see tests/conftest.py::one_thread)."""


TINY = dict(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, ffn_dim=64, num_codebooks=4,
            codebook_size=64, fast_dim=32, fast_n_layers=1, fast_n_heads=2, fast_n_kv_heads=1,
            fast_head_dim=16, fast_ffn_dim=64, max_seq_len=512)  # fmt: skip


# ---------------------------------------------------------------- losses
def test_slow_loss_only_on_masked_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 10)
    tokens = torch.randint(0, 10, (2, 6))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 0]]).bool()
    loss, _, n = slow_loss(logits, tokens, mask)
    assert n == 4
    # Positions t predict t+1: only logits at t in {2,3,4} (row 0) and {3} (row 1) matter.
    other = logits.clone()
    other[0, [0, 1, 5]] = 100.0
    other[1, [0, 1, 2, 4, 5]] = -100.0
    assert torch.allclose(slow_loss(other, tokens, mask)[0], loss)
    other[0, 3] += torch.randn(10)
    assert not torch.allclose(slow_loss(other, tokens, mask)[0], loss)
    uniform = torch.zeros(2, 6, 10)
    assert torch.allclose(slow_loss(uniform, tokens, mask)[0], torch.tensor(math.log(10)))


def test_fast_targets_shift_and_weights():
    hidden = torch.arange(2 * 5, dtype=torch.float).view(2, 5, 1)
    codes = torch.arange(2 * 3 * 5).view(2, 3, 5)
    audio = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 0]]).bool()
    loss = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 1, 1]]).bool()
    h, frames = fast_targets(hidden, codes, audio, loss)
    # Target frames at t+1 in {2,3} (row 0) and {2,3} (row 1) -> hidden at t in {1,2}.
    assert h.squeeze(-1).tolist() == [1.0, 2.0, 6.0, 7.0]
    assert torch.equal(frames[0], codes[0, :, 2]) and torch.equal(frames[3], codes[1, :, 3])

    torch.manual_seed(0)
    fl = torch.randn(4, 3, 8)
    tg = torch.randint(0, 8, (4, 3))
    w = fast_weights([0.0, 1.0, 1.0], 3)
    base, ce, acc = fast_loss(fl, tg, w)
    changed = fl.clone()
    changed[:, 0] = torch.randn(4, 8) * 10
    assert torch.allclose(fast_loss(changed, tg, w)[0], base)  # w(0)=0 drops codebook 0
    assert not torch.allclose(
        fast_loss(changed, tg, fast_weights("ones", 3))[0], fast_loss(fl, tg, fast_weights("ones", 3))[0]
    )
    assert torch.allclose(base, ce[1:].mean())
    assert fast_weights("sft", 4, decay=0.5) == [0.0, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="K=3"):
        fast_weights([1.0, 1.0], 3)


def test_dual_ar_loss_keys_and_no_targets():
    b, n, k = 1, 4, 2
    batch = {"tokens": torch.zeros(b, n, dtype=torch.long), "codes": torch.zeros(b, k, n, dtype=torch.long),
             "audio_mask": torch.zeros(b, n, dtype=torch.bool), "loss_mask": torch.zeros(b, n, dtype=torch.bool)}  # fmt: skip
    logits = torch.randn(b, n, 5, requires_grad=True)
    hidden = torch.randn(b, n, 3, requires_grad=True)
    out = dual_ar_loss(logits, hidden, batch, lambda h, c: torch.zeros(h.shape[0], k, 5), [1.0, 1.0])
    assert out["loss"].item() == 0.0 and {"loss_slow", "loss_fast", "acc_cb0", "acc_cb1"} <= set(out)
    out["loss"].backward()


def test_selected_logits_path_matches_full_logits():
    torch.manual_seed(0)
    b, n, k, d, v = 2, 7, 3, 4, 9
    hidden = torch.randn(b, n, d)
    head = torch.randn(v, d)
    batch = {"tokens": torch.randint(0, v, (b, n)), "codes": torch.randint(0, 5, (b, k, n)),
             "audio_mask": torch.rand(b, n) > 0.3, "loss_mask": torch.rand(b, n) > 0.4}  # fmt: skip
    fast = lambda h, c: torch.randn(h.shape[0], k, 5, generator=torch.Generator().manual_seed(1))  # noqa: E731
    full = dual_ar_loss(hidden @ head.t(), hidden, batch, fast, [1.0] * k)
    sel = dual_ar_loss(None, hidden, batch, fast, [1.0] * k, logits_fn=lambda h: h @ head.t())
    for key in ("loss", "loss_slow", "acc_slow", "n_tokens"):
        assert torch.allclose(full[key], sel[key]), key


def test_schedules():
    assert warmup_stable_decay(0, 10, 100) == pytest.approx(0.1)
    assert warmup_stable_decay(50, 10, 100) == 1.0
    assert warmup_stable_decay(99, 10, 100, decay_fraction=0.2, min_ratio=0.1) < 0.2
    assert warmup_cosine(100, 10, 100, min_ratio=0.0) == pytest.approx(0.0)


# ---------------------------------------------------------------- module
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ar")
    ds = write_synthetic_codes(root / "codes", num_items=18, num_codebooks=4, codebook_size=64)
    dm = CodesDataModule(str(ds), str(root / "tok"), batch_size=4, num_semantic=64, vocab_size=300)
    return dm, root


def _module(root, **kw):
    return DualARLitModule(model=dict(TINY), tokenizer_dir=str(root / "tok"), warmup_steps=2, **kw)


def test_fast_dev_run(data):
    dm, root = data
    module = _module(root)
    assert module.model_config.vocab_size == dm.tokenizer.vocab_size
    assert module.model_config.semantic_start == dm.tokenizer.semantic_start
    trainer = pl.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, gradient_clip_val=1.0)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    m = trainer.callback_metrics
    for key in [
        "train/loss",
        "train/loss_slow",
        "train/loss_fast",
        "train/acc_cb0",
        "train/acc_cb3",
        "val/loss",
    ]:
        assert key in m and torch.isfinite(m[key]), key


def test_overfit_one_batch(data):
    dm, root = data
    dm.setup()
    torch.manual_seed(0)
    module = _module(root, lr=3e-3)
    batch = next(iter(dm.train_dataloader()))
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3)
    first = module(batch)["loss"].item()
    for _ in range(30):
        opt.zero_grad()
        module(batch)["loss"].backward()
        opt.step()
    last = module(batch)["loss"].item()
    assert last < 0.6 * first, (first, last)


def test_param_groups_split(data):
    _, root = data
    module = _module(root)
    groups = {g["name"]: g for g in param_groups(module.model, 1e-4, 1e-3, 0.1)}
    assert set(groups) == {"backbone", "backbone_nodecay", "audio", "audio_nodecay"}
    assert groups["audio"]["lr"] == 1e-3 and groups["backbone"]["lr"] == 1e-4
    assert groups["backbone_nodecay"]["weight_decay"] == 0.0
    ids = {id(p) for p in groups["audio_nodecay"]["params"]}
    assert id(module.model.slow.codebook_emb.weight) in ids and id(module.model.fast.code_emb.weight) in ids
    n = sum(len(g["params"]) for g in groups.values())
    assert n == len(list(module.model.parameters()))


def test_init_from_checkpoint_and_mismatch(data, tmp_path):
    _, root = data
    src = _module(root)
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in src.model.state_dict().items()}}, ckpt)
    dst = _module(root, init_from=str(ckpt))
    for k, v in src.model.state_dict().items():
        assert torch.equal(v, dst.model.state_dict()[k])
    bad = DualARLitModule(model=dict(TINY, ffn_dim=48), tokenizer_dir=str(root / "tok"))
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in bad.model.state_dict().items()}}, tmp_path / "bad.ckpt"
    )
    with pytest.raises(ValueError, match=r"mlp\.gate\.weight: checkpoint \(48, 32\) vs model \(64, 32\)"):
        _module(root, init_from=str(tmp_path / "bad.ckpt"))
    with pytest.raises(FileNotFoundError):
        _module(root, init_from=str(tmp_path / "missing"))


def test_model_config_must_agree_with_tokenizer(data):
    _, root = data
    with pytest.raises(ValueError, match="semantic_start"):
        DualARLitModule(model=dict(TINY, semantic_start=3), tokenizer_dir=str(root / "tok"))
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        DualARLitModule(model=dict(TINY), tokenizer_dir=str(root / "nowhere"))
    assert isinstance(_module(root).model, DualAR)


# ---------------------------------------------------------------- recipes through the real config
def test_pretrain_recipe_fast_dev_run(data, tmp_path):
    from s2train.entry import train
    from tests.conftest import compose_config

    _, root = data
    cfg = compose_config("train", [
        "recipe=pretrain", "model=tiny", "codec=tiny", "debug=fast_dev_run", "logger=none", "callbacks=none",
        f"data.dataset_dir={root / 'codes'}", f"data.tokenizer_dir={tmp_path / 'tok'}", "data.batch_size=2",
    ], tmp_path)  # fmt: skip
    assert cfg.module.fast_weights == "ones" and cfg.module.model.num_codebooks == 4
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_lora_recipe_composes_presets(tmp_path):
    from tests.conftest import compose_config

    cfg = compose_config("train", ["recipe=lora", "init_from=/x", "lora=fast_only"], tmp_path)
    assert cfg.module.lora.r == 32 and cfg.module.fast_weights == "sft"
    cfg = compose_config("train", ["recipe=lora", "init_from=/x"], tmp_path)
    assert cfg.module.lora.r == 8 and cfg.module.lora.dropout == 0.01


def test_bench_train_script_runs():
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "scripts" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(
        ["--size", "tiny", "--batch-size", "2", "--frames", "8", "--steps", "2", "--warmup", "1"]
    )
    assert result["frames_per_s"] > 0 and result["seq_len"] > 12


# ---------------------------------------------------------------- alignment prior
def _align_batch(n_text=4, n_frames=8):
    """One prompt: 2 scaffold tokens, n_text transcript tokens, 1 scaffold, n_frames target frames."""
    n = 3 + n_text + n_frames
    text = torch.zeros(1, n, dtype=torch.bool)
    text[0, 2 : 2 + n_text] = True
    audio = torch.zeros(1, n, dtype=torch.bool)
    audio[0, 3 + n_text :] = True
    return {"text_mask": text, "audio_mask": audio, "loss_mask": audio.clone()}, n


def _one_hot_attention(n, targets, hd=64, scale=40.0):
    """q, k [1, 1, n, hd] whose softmax attention sends query p to key targets[p] (~one-hot)."""
    k = torch.zeros(1, 1, n, hd)
    k[0, 0, torch.arange(n), torch.arange(n)] = 1.0
    q = torch.zeros(1, 1, n, hd)
    q[0, 0, torch.arange(n), torch.as_tensor(targets)] = scale * math.sqrt(hd)
    return q, k


def test_alignment_prior_prefers_the_diagonal():
    from s2train.ar.prior import alignment_prior_loss

    batch, n = _align_batch()
    text_pos = [2, 3, 4, 5]
    frame_query = list(range(6, 14))  # queries predicting frames 0..7
    diag = list(range(n))
    back = list(range(n))
    audio_only = list(range(n))
    for f, p in enumerate(frame_query):
        diag[p] = text_pos[f // 2]  # frame f speaks token f // 2
        back[p] = text_pos[3 - f // 2]
        audio_only[p] = p  # attends to itself, never to the text
    losses = {}
    for name, tgt in [("diag", diag), ("back", back), ("audio", audio_only)]:
        q, k = _one_hot_attention(n, tgt)
        losses[name], mass = alignment_prior_loss(q, k, batch, heads=1, sigma=0.2)
        assert mass == pytest.approx(0.0 if name == "audio" else 1.0, abs=1e-3), name
    assert losses["diag"] < 0.1 < losses["back"] < losses["audio"], losses


def test_alignment_prior_gradient_moves_a_head_onto_the_text():
    from s2train.ar.prior import alignment_prior_loss

    torch.manual_seed(0)
    batch, n = _align_batch()
    q = torch.randn(1, 2, n, 16, requires_grad=True)
    k = torch.randn(1, 1, n, 16, requires_grad=True)
    opt = torch.optim.SGD([q, k], lr=0.5)
    first, mass0 = alignment_prior_loss(q, k, batch, heads=1)
    for _ in range(50):
        opt.zero_grad()
        loss, _ = alignment_prior_loss(q, k, batch, heads=1)
        loss.backward()
        opt.step()
    last, mass1 = alignment_prior_loss(q, k, batch, heads=1)
    assert last < 0.5 * first and mass1 > mass0 + 0.3, (first, last, mass0, mass1)
    assert q.grad[:, 1].abs().sum() == 0  # only the guided head


def test_module_alignment_prior_is_logged_and_checked(data):
    dm, root = data
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert "text_mask" in batch and batch["text_mask"].any()
    module = _module(root, align_weight=0.5, align_layer=0)
    out = module(batch)
    plain = _module(root)
    plain.model.load_state_dict(module.model.state_dict())
    base = plain(batch)
    assert "align_loss" not in base and 0.0 <= float(out["align_mass"]) <= 1.0
    assert float(out["loss"]) == pytest.approx(float(base["loss"] + 0.5 * out["align_loss"]), rel=1e-5)
    with pytest.raises(ValueError, match="align_layer"):
        _module(root, align_weight=0.5, align_layer=5)


def test_module_forward_attention_prior_trains_only(data):
    dm, root = data
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    prior = {"heads": 1, "sigma": 0.1, "hold_steps": 5, "anneal_steps": 10}
    module = _module(root, attn_prior=prior, align_layer=0)
    plain = _module(root)
    plain.model.load_state_dict(module.model.state_dict())
    module.train(), plain.train()
    torch.manual_seed(0)
    biased = module(batch)
    torch.manual_seed(0)
    base = plain(batch)
    assert float(biased["align/prior_weight"]) == 1.0
    assert not torch.allclose(biased["loss_slow"], base["loss_slow"])  # the bias is in the forward pass
    for key in ("align/mass", "align/monotonic", "align/diag_err"):
        assert 0.0 <= float(biased[key]) <= 1.0, key
    module.eval(), plain.eval()
    with torch.no_grad():
        val, ref = module(batch), plain(batch)
    assert "align/prior_weight" not in val  # validation runs without the prior
    assert torch.equal(val["loss"], ref["loss"])
    with pytest.raises(ValueError, match="attn_prior"):
        _module(root, attn_prior={"heads": 9})
