"""S2 Pro import/export against a miniature checkpoint written here in the released fish_qwen3_omni layout.

The fixture checkpoint is built from hand-listed upstream key names (not from `s2train.ar.upstream`), and the
forward check is an independent re-computation from the raw upstream tensors with plain torch ops.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from s2train.ar import DualAR
from s2train.ar.upstream import (
    UpstreamLayout,
    config_from_upstream,
    export_s2pro,
    import_s2pro,
    is_upstream_dir,
    load_s2pro_pretrained,
    load_s2pro_weights,
    mapping_table,
    parse_size,
)
from s2train.text import Reference, S2Tokenizer, build_prompt
from s2train.text.upstream_tokenizer import UpstreamTokenizer, is_upstream_tokenizer_dir

# Miniature sizes in the S2 Pro proportions: 260 BPE ids + 10 specials, 16 semantic tokens, vocab padded to 8.
SEM_START, C, K, VOCAB = 270, 16, 3, 288
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>", "<|text|>", "<|voice|>", "<|interleave|>",
            "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"]  # fmt: skip


def mini_config(fast_dim=32, tied=True, fast_qk=False):
    common = dict(attention_o_bias=False, attention_qkv_bias=False, dropout=0.0, head_dim=8, initializer_range=0.1,
                  n_head=4, n_local_heads=2, norm_eps=1e-6, rope_base=1000000, use_moe=False)  # fmt: skip
    return {
        "model_type": "fish_qwen3_omni", "dtype": "bfloat16", "eos_token_id": 262, "pad_token_id": 263,
        "audio_pad_token_id": 269, "semantic_start_token_id": SEM_START, "semantic_end_token_id": SEM_START + C - 1,
        "text_config": {**common, "model_type": "fish_qwen3", "dim": 32, "n_layer": 2, "intermediate_size": 48,
                        "max_seq_len": 64, "vocab_size": VOCAB, "tie_word_embeddings": tied,
                        "attention_qk_norm": True},
        "audio_decoder_config": {**common, "model_type": "fish_qwen3_audio_decoder", "dim": fast_dim, "n_layer": 1,
                                 "intermediate_size": 40, "max_seq_len": K + 1, "vocab_size": C, "num_codebooks": K,
                                 "text_dim": 32, "tie_word_embeddings": False, "attention_qk_norm": fast_qk},
    }  # fmt: skip


def upstream_tensors(raw, seed=0):
    """Random bf16 tensors under the released key names for config `raw`."""
    g = torch.Generator().manual_seed(seed)
    tc, ad = raw["text_config"], raw["audio_decoder_config"]
    out = {}

    def rnd(*shape, scale=0.15, mean=0.0):
        return (mean + scale * torch.randn(*shape, generator=g)).bfloat16()

    def block(p, c):
        d, hd, nh, kv, f = c["dim"], c["head_dim"], c["n_head"], c["n_local_heads"], c["intermediate_size"]
        out[p + "attention_norm.weight"] = rnd(d, mean=1.0)
        out[p + "attention.wqkv.weight"] = rnd((nh + 2 * kv) * hd, d)
        if c["attention_qk_norm"]:
            out[p + "attention.q_norm.weight"] = rnd(hd, mean=1.0)
            out[p + "attention.k_norm.weight"] = rnd(hd, mean=1.0)
        out[p + "attention.wo.weight"] = rnd(d, nh * hd)
        out[p + "ffn_norm.weight"] = rnd(d, mean=1.0)
        out[p + "feed_forward.w1.weight"] = rnd(f, d)
        out[p + "feed_forward.w3.weight"] = rnd(f, d)
        out[p + "feed_forward.w2.weight"] = rnd(d, f)

    out["text_model.model.embeddings.weight"] = rnd(VOCAB, tc["dim"], scale=1.0)
    for i in range(tc["n_layer"]):
        block(f"text_model.model.layers.{i}.", tc)
    out["text_model.model.norm.weight"] = rnd(tc["dim"], mean=1.0)
    if not tc["tie_word_embeddings"]:
        out["text_model.lm_head.weight"] = rnd(VOCAB, tc["dim"])
    out["audio_decoder.codebook_embeddings.weight"] = rnd(K * C, tc["dim"], scale=1.0)
    if ad["dim"] != tc["dim"]:
        out["audio_decoder.project_in.weight"] = rnd(ad["dim"], tc["dim"])
        out["audio_decoder.project_in.bias"] = rnd(ad["dim"])
    out["audio_decoder.embeddings.weight"] = rnd(C, ad["dim"], scale=1.0)
    for i in range(ad["n_layer"]):
        block(f"audio_decoder.layers.{i}.", ad)
    out["audio_decoder.norm.weight"] = rnd(ad["dim"], mean=1.0)
    out["audio_decoder.output.weight"] = rnd(C, ad["dim"])
    return out


def write_checkpoint(d: Path, raw, tensors):
    """Two shards + index + config.json, as the release ships them."""
    d.mkdir(parents=True, exist_ok=True)
    keys = list(tensors)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    weight_map = {}
    for i, part in enumerate(halves):
        name = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, str(d / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    (d / "config.json").write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    return d


def read_dir(d: Path):
    index = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
    out = {}
    for shard in sorted(set(index.values())):
        with safe_open(str(d / shard), framework="pt") as fh:
            out.update({k: fh.get_tensor(k) for k in fh.keys()})
    return out


@pytest.fixture
def mini(tmp_path):
    raw = mini_config()
    tensors = upstream_tensors(raw)
    return write_checkpoint(tmp_path / "s2-mini", raw, tensors), raw, tensors


# --------------------------------------------------------------------------- independent reference forward
def ref_rope(hd, n, base):
    freqs = 1.0 / (base ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.outer(torch.arange(n).float(), freqs)
    return ang.cos().bfloat16().float(), ang.sin().bfloat16().float()


def ref_rms(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def ref_block(x, W, p, c, cos, sin):
    nh, kv, hd = c["n_head"], c["n_local_heads"], c["head_dim"]
    b, n, _ = x.shape
    h = ref_rms(x, W[p + "attention_norm.weight"])
    q, k, v = (h @ W[p + "attention.wqkv.weight"].T).split([nh * hd, kv * hd, kv * hd], -1)
    q, k, v = q.view(b, n, nh, hd), k.view(b, n, kv, hd), v.view(b, n, kv, hd)
    if c["attention_qk_norm"]:
        q, k = ref_rms(q, W[p + "attention.q_norm.weight"]), ref_rms(k, W[p + "attention.k_norm.weight"])

    def rope(t):  # adjacent pairs (2i, 2i+1)
        a, bb = t[..., 0::2], t[..., 1::2]
        cs, sn = cos[:n, None], sin[:n, None]
        return torch.stack([a * cs - bb * sn, a * sn + bb * cs], -1).flatten(-2)

    q, k = rope(q).transpose(1, 2), rope(k).transpose(1, 2)
    k = k.repeat_interleave(nh // kv, 1)  # GQA: query head j uses KV head j // (nh / kv)
    v = v.transpose(1, 2).repeat_interleave(nh // kv, 1)
    att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    att = att.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
    x = x + (att @ v).transpose(1, 2).reshape(b, n, nh * hd) @ W[p + "attention.wo.weight"].T
    h = ref_rms(x, W[p + "ffn_norm.weight"])
    mlp = (F.silu(h @ W[p + "feed_forward.w1.weight"].T) * (h @ W[p + "feed_forward.w3.weight"].T)) @ W[
        p + "feed_forward.w2.weight"
    ].T
    return x + mlp


def ref_forward(raw, W, tokens, codes, audio):
    """Slow logits [B, L, V], final-normed hidden [B, L, D] from raw upstream tensors (fp32)."""
    W = {k: v.float() for k, v in W.items()}
    tc = raw["text_config"]
    x = W["text_model.model.embeddings.weight"][tokens]
    cb = W["audio_decoder.codebook_embeddings.weight"]
    fused = x + sum(cb[codes[:, i] + i * C] for i in range(K))
    x = torch.where(audio[..., None], fused / math.sqrt(K + 1), x)
    cos, sin = ref_rope(tc["head_dim"], tc["max_seq_len"], tc["rope_base"])
    for i in range(tc["n_layer"]):
        x = ref_block(x, W, f"text_model.model.layers.{i}.", tc, cos, sin)
    h = ref_rms(x, W["text_model.model.norm.weight"])
    head = (
        W["text_model.model.embeddings.weight"]
        if tc["tie_word_embeddings"]
        else W["text_model.lm_head.weight"]
    )
    return h @ head.T, h


def ref_fast(raw, W, h, codes):
    """Fast logits [N, K, C] for hidden [N, D] and frame codes [N, K]."""
    W = {k: v.float() for k, v in W.items()}
    ad = raw["audio_decoder_config"]
    if "audio_decoder.project_in.weight" in W:
        h = h @ W["audio_decoder.project_in.weight"].T + W["audio_decoder.project_in.bias"]
    x = torch.cat([h[:, None], W["audio_decoder.embeddings.weight"][codes[:, : K - 1]]], 1)
    cos, sin = ref_rope(ad["head_dim"], K, ad["rope_base"])
    for i in range(ad["n_layer"]):
        x = ref_block(x, W, f"audio_decoder.layers.{i}.", ad, cos, sin)
    return ref_rms(x, W["audio_decoder.norm.weight"]) @ W["audio_decoder.output.weight"].T


def batch(seed=0, b=2, n=20):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, C, (b, K, n), generator=g)
    audio = torch.zeros(b, n, dtype=torch.bool)
    audio[:, 8:] = True
    tokens = torch.where(audio, SEM_START + codes[:, 0], torch.randint(0, SEM_START, (b, n), generator=g))
    return tokens, codes, audio


# --------------------------------------------------------------------------- tests
def test_import_maps_config_and_every_tensor(mini):
    d, raw, tensors = mini
    model, cfg, meta = import_s2pro(d)
    assert (cfg.vocab_size, cfg.semantic_start, cfg.num_semantic) == (VOCAB, SEM_START, C)
    assert (cfg.num_codebooks, cfg.codebook_size, cfg.n_kv_heads, cfg.ffn_dim, cfg.fast_ffn_dim) == (
        K,
        C,
        2,
        48,
        40,
    )
    assert meta["layout"] == UpstreamLayout(2, 1, True, True, False, False) and meta["num_tensors"] == len(
        tensors
    )
    sd = model.state_dict()
    assert all(v.dtype == torch.bfloat16 for v in sd.values())
    assert torch.equal(sd["slow.tok_emb.weight"], tensors["text_model.model.embeddings.weight"])
    assert torch.equal(sd["slow.codebook_emb.weight"], tensors["audio_decoder.codebook_embeddings.weight"])
    assert torch.equal(
        sd["slow.layers.1.mlp.up.weight"], tensors["text_model.model.layers.1.feed_forward.w3.weight"]
    )
    assert torch.equal(
        sd["fast.layers.0.attn.qkv.weight"], tensors["audio_decoder.layers.0.attention.wqkv.weight"]
    )
    assert not any("fast.layers.0.attn.q_norm" in k for k in sd)  # the released fast AR has no QK-norm
    assert is_upstream_dir(d) and not is_upstream_dir(d.parent)


def test_forward_matches_independent_reference(mini):
    d, raw, tensors = mini
    model, cfg, _ = import_s2pro(d)
    tokens, codes, audio = batch()
    ref_logits, ref_h = ref_forward(raw, tensors, tokens, codes, audio)
    m32 = model.float()
    with torch.no_grad():
        out = m32(tokens, codes, audio)
        frames = codes.permute(0, 2, 1)[audio]  # [N, K]
        fast = m32.fast_forward(out.hidden[audio], frames)
    ref_f = ref_fast(raw, tensors, ref_h[audio], frames)
    for name, got, want in (
        ("text", out.logits[~audio], ref_logits[~audio]),
        ("audio", out.logits[audio], ref_logits[audio]),
        ("fast", fast, ref_f),
    ):
        err = (got - want).abs().max().item()
        assert err < 1e-4 * want.abs().max().item(), f"{name} logits differ by {err}"
    # Sanity: the reference is sensitive to the fusion scale, so the check above can fail.
    x_wrong = ref_forward(raw, {**tensors}, tokens, codes, torch.zeros_like(audio))[0]
    assert (x_wrong[audio] - ref_logits[audio]).abs().max() > 1e-2


def test_bf16_forward_close_to_reference(mini):
    d, raw, tensors = mini
    model, _, _ = import_s2pro(d)
    tokens, codes, audio = batch(seed=1)
    ref_logits, _ = ref_forward(raw, tensors, tokens, codes, audio)
    with torch.no_grad():
        got = model(tokens, codes, audio).logits.float()
    rel = ((got - ref_logits).abs().max() / ref_logits.abs().max()).item()
    assert rel < 0.05, rel


def test_round_trip_is_bit_exact(mini, tmp_path):
    d, raw, tensors = mini
    model, cfg, meta = import_s2pro(d)
    out = export_s2pro(model, cfg, tmp_path / "exported", shard_size=20_000, base_config=meta["config"])
    back = read_dir(out)
    assert back.keys() == tensors.keys()
    assert all(back[k].dtype == tensors[k].dtype and torch.equal(back[k], tensors[k]) for k in tensors)
    assert json.loads((out / "config.json").read_text()) == raw
    assert (out / "config.json").read_bytes() == (d / "config.json").read_bytes()
    assert len(set(json.loads((out / "model.safetensors.index.json").read_text())["weight_map"].values())) > 2
    model2, cfg2, _ = import_s2pro(out)
    assert cfg2 == cfg
    sd1, sd2 = model.state_dict(), model2.state_dict()
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    # Exporting over the directory the weights were imported from (files replaced, not rewritten in place).
    export_s2pro(model2, cfg2, out, base_config=meta["config"])
    assert len(list(out.glob("model-*.safetensors"))) == 1
    assert all(torch.equal(v, tensors[k]) for k, v in read_dir(out).items())


@pytest.mark.parametrize("variant", [dict(fast_dim=24, tied=False, fast_qk=True)])
def test_variant_projection_untied_fast_qk_norm(tmp_path, variant):
    raw = mini_config(**variant)
    tensors = upstream_tensors(raw, seed=3)
    d = write_checkpoint(tmp_path / "variant", raw, tensors)
    model, cfg, meta = import_s2pro(d)
    assert meta["layout"] == UpstreamLayout(2, 1, False, True, True, True)
    tokens, codes, audio = batch(seed=2)
    ref_logits, ref_h = ref_forward(raw, tensors, tokens, codes, audio)
    with torch.no_grad():
        m32 = model.float()
        out = m32(tokens, codes, audio)
        frames = codes.permute(0, 2, 1)[audio]
        fast = m32.fast_forward(out.hidden[audio], frames)
    assert (out.logits - ref_logits).abs().max() < 1e-3
    assert (fast - ref_fast(raw, tensors, ref_h[audio], frames)).abs().max() < 1e-3
    out_dir = export_s2pro(model.bfloat16(), cfg, tmp_path / "variant-out", base_config=meta["config"])
    back = read_dir(out_dir)
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)


def test_missing_and_unknown_keys_listed(mini, tmp_path):
    _, raw, tensors = mini
    bad = dict(tensors)
    bad.pop("text_model.model.layers.1.ffn_norm.weight")
    bad["audio_decoder.layers.0.attention.q_norm.weight"] = torch.ones(8, dtype=torch.bfloat16)
    bad["text_model.model.mystery.weight"] = torch.zeros(2, dtype=torch.bfloat16)
    d = write_checkpoint(tmp_path / "bad", raw, bad)
    with pytest.raises(ValueError) as e:
        import_s2pro(d)
    msg = str(e.value)
    assert "text_model.model.layers.1.ffn_norm.weight" in msg and "text_model.model.mystery.weight" in msg
    assert "audio_decoder.layers.0.attention.q_norm.weight" in msg


def test_shape_mismatch_and_bad_config(mini, tmp_path):
    _, raw, tensors = mini
    bad = dict(tensors, **{"audio_decoder.output.weight": torch.zeros(C + 1, 32, dtype=torch.bfloat16)})
    with pytest.raises(ValueError, match="audio_decoder.output|fast.output"):
        import_s2pro(write_checkpoint(tmp_path / "shape", raw, bad))
    with pytest.raises(ValueError, match="attention_qkv_bias"):
        config_from_upstream({**raw, "text_config": {**raw["text_config"], "attention_qkv_bias": True}})
    with pytest.raises(ValueError, match="model_type"):
        config_from_upstream({**raw, "model_type": "dual_ar"})


def test_split_qkv_is_fused(mini, tmp_path):
    _, raw, tensors = mini
    split = dict(tensors)
    p = "text_model.model.layers.0.attention."
    q, k, v = split.pop(p + "wqkv.weight").split([32, 16, 16])
    split.update({p + "wq.weight": q, p + "wk.weight": k, p + "wv.weight": v})
    model, _, _ = import_s2pro(write_checkpoint(tmp_path / "split", raw, split))
    assert torch.equal(model.state_dict()["slow.layers.0.attn.qkv.weight"], tensors[p + "wqkv.weight"])


def test_load_into_config_built_model(mini):
    d, _, _ = mini
    ref, cfg, _ = import_s2pro(d)
    model = DualAR(cfg).bfloat16()
    load_s2pro_weights(model, d)
    sd = model.state_dict()
    assert (
        all(torch.equal(sd[k], v) for k, v in ref.state_dict().items())
        and sd.keys() == ref.state_dict().keys()
    )
    tokens, codes, audio = batch()
    with torch.no_grad():
        assert torch.equal(model(tokens, codes, audio).logits, ref(tokens, codes, audio).logits)
    wrong = DualAR(cfg.__class__.from_dict(cfg.to_dict(), ffn_dim=64))
    with pytest.raises(ValueError, match="ffn_dim"):
        load_s2pro_weights(wrong, d)


S2PRO_CONFIG = {
    "model_type": "fish_qwen3_omni", "dtype": "bfloat16", "eos_token_id": 151645, "pad_token_id": 151669,
    "audio_pad_token_id": 151677, "semantic_start_token_id": 151678, "semantic_end_token_id": 155773,
    "text_config": {"model_type": "fish_qwen3", "dim": 2560, "n_layer": 36, "n_head": 32, "n_local_heads": 8,
                    "head_dim": 128, "intermediate_size": 9728, "rope_base": 1000000, "norm_eps": 1e-06,
                    "max_seq_len": 32768, "vocab_size": 155776, "tie_word_embeddings": True,
                    "attention_qk_norm": True, "attention_qkv_bias": False, "attention_o_bias": False},
    "audio_decoder_config": {"model_type": "fish_qwen3_audio_decoder", "dim": 2560, "n_layer": 4, "n_head": 32,
                             "n_local_heads": 8, "head_dim": 128, "intermediate_size": 9728, "rope_base": 1000000,
                             "norm_eps": 1e-06, "max_seq_len": 11, "vocab_size": 4096, "num_codebooks": 10,
                             "text_dim": 2560, "tie_word_embeddings": False, "attention_qk_norm": False},
}  # fmt: skip


def test_s2pro_config_builds_on_meta_device():
    from s2train.ar.upstream import adapt_model

    cfg, layout = config_from_upstream(S2PRO_CONFIG)
    assert (cfg.vocab_size, cfg.semantic_start, cfg.num_semantic, cfg.n_layers, cfg.fast_n_layers) == (
        155776, 151678, 4096, 36, 4,
    )  # fmt: skip
    with torch.device("meta"):
        model = adapt_model(DualAR(cfg), layout)
    block = (48 * 128 * 2560) + 4096 * 2560 + 3 * 2560 * 9728 + 2 * 2560
    expect = (
        155776 * 2560
        + 36 * (block + 2 * 128)
        + 2560
        + 40960 * 2560
        + 4096 * 2560
        + 4 * block
        + 2560
        + 4096 * 2560
    )
    assert model.num_params() == expect and 4.4e9 < expect < 4.7e9
    from s2train.ar.sizes import PRESETS

    preset = PRESETS["s2pro"]  # configs/model/s2pro.yaml mirrors it
    assert {k: getattr(cfg, k) for k in preset if k != "codebook_sizes"} == {
        k: v for k, v in preset.items() if k != "codebook_sizes"
    }
    rows = mapping_table(layout)
    assert sum(n for *_, n in rows) == 36 * 9 + 4 * 7 + 6 == len(model.state_dict())
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2MiB") == 2 * 2**20


# --------------------------------------------------------------------------- tokenizer
def write_tokenizer(d: Path, semantic_start=SEM_START, config=None):
    """A Qwen-style byte-level BPE tokenizer.json (260 ids) + the Fish specials and 16 semantic tokens."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "t")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    names = SPECIALS + [f"<|semantic:{i}|>" for i in range(C)]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in names])
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    decl = {str(tok.token_to_id(t)): {"content": t, "special": True} for t in names}
    (d / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decl}))
    cfg = config or mini_config()
    (d / "config.json").write_text(json.dumps({**cfg, "semantic_start_token_id": semantic_start}))
    return d


def test_upstream_tokenizer_adapter(tmp_path):
    d = write_tokenizer(tmp_path / "tok")
    assert is_upstream_tokenizer_dir(d)
    tok = UpstreamTokenizer.from_pretrained(d)
    assert (tok.semantic_start, tok.num_semantic, tok.model_vocab_size) == (SEM_START, C, VOCAB)
    assert (tok.eos_id, tok.im_start_id, tok.im_end_id, tok.pad_id, tok.voice_id) == (260, 261, 262, 263, 265)
    assert tok.audio_pad_id == 269 and tok.decode(tok.encode("hello there")) == "hello there"
    prompt = build_prompt(tok, "hello", references=[Reference("hi", torch.zeros(K, 3, dtype=torch.long))])
    assert int(prompt.audio_mask.sum()) == 3 and (prompt.tokens[prompt.audio_mask] == SEM_START).all()
    saved = tok.save(tmp_path / "saved")
    assert (saved / "tokenizer.json").read_bytes() == (d / "tokenizer.json").read_bytes()
    assert S2Tokenizer.load(d).semantic_start == SEM_START  # the plain loader reads the released dir too
    again = UpstreamTokenizer.load(saved)
    assert again.encode("hello <|im_end|>") == tok.encode("hello <|im_end|>")
    with pytest.raises(ValueError, match="semantic"):
        UpstreamTokenizer.from_pretrained(write_tokenizer(tmp_path / "bad", semantic_start=SEM_START + 1))


def test_export_copies_tokenizer_and_ids(mini, tmp_path):
    d, raw, _ = mini
    tok_dir = write_tokenizer(tmp_path / "tok")
    model, cfg, _ = import_s2pro(d)
    out = export_s2pro(model, cfg, tmp_path / "with-tok", tokenizer_dir=tok_dir)
    conf = json.loads((out / "config.json").read_text())
    assert (conf["eos_token_id"], conf["pad_token_id"], conf["audio_pad_token_id"]) == (262, 263, 269)
    assert (out / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()
    assert UpstreamTokenizer.from_pretrained(out).semantic_start == SEM_START
    model2, tok, codec = load_s2pro_pretrained(out)
    assert isinstance(tok, UpstreamTokenizer) and codec is None and not model2.training
    (out / "codec.pth").write_bytes(b"")  # with the released codec beside it, the dir is the codec slot
    assert load_s2pro_pretrained(out)[2] == out


def test_native_model_exports_and_reimports(tmp_path):
    from s2train.ar import preset

    cfg = preset("tiny", vocab_size=VOCAB, semantic_start=SEM_START, num_semantic=C, codebook_size=C)
    torch.manual_seed(0)
    model = DualAR(cfg).bfloat16()  # s2train-native: QK-norm in both ARs, no upstream config to start from
    out = export_s2pro(model, cfg, tmp_path / "native")
    conf = json.loads((out / "config.json").read_text())
    assert conf["audio_decoder_config"]["attention_qk_norm"] is True and conf["semantic_end_token_id"] == 285
    back, cfg2, meta = import_s2pro(out)
    # the released layout has no field for the RoPE angle precision: imported models use upstream's fp32 angles
    want = {**cfg.to_dict(), "codebook_sizes": None, "rope_fp32_angles": True}
    assert cfg2.to_dict() == want and meta["layout"].fast_qk_norm
    sd, sd2 = model.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)


def test_upstream_rope_tables_installed():
    from s2train.ar.layers import RotaryTable
    from s2train.ar.upstream import install_upstream_rope

    table = RotaryTable(128, 4096, 1e6, True)
    before = table.cos.clone(), table.sin.clone()
    install_upstream_rope(table)
    want_cos, want_sin = ref_rope(128, 4096, 1e6)
    assert torch.equal(table.cos.float(), want_cos) and torch.equal(table.sin.float(), want_sin)
    # fp64 angles (s2train's own tables) round differently from upstream's fp32 ones in some entries.
    changed = (before[0] != want_cos).sum() + (before[1] != want_sin).sum()
    assert 0 < changed < 0.05 * want_cos.numel()
    # `fp32_angles=True` (what import records in the config) computes upstream's tables by itself, and `reset()`
    # after install keeps them.
    own = RotaryTable(128, 4096, 1e6, True, fp32_angles=True)
    assert torch.equal(own.cos.float(), want_cos) and torch.equal(own.sin.float(), want_sin)
    table.reset()
    assert torch.equal(table.cos.float(), want_cos) and torch.equal(table.sin.float(), want_sin)


def test_recipe_loaders_accept_a_released_directory(mini):
    """`init_from=<s2-pro dir>` (finetune/lora) and `load_pretrained` (grpo, eval, TTS) dispatch to the importer."""
    from s2train.bundle import load_init_weights, load_pretrained

    d, _, _ = mini
    write_tokenizer(d, config=json.loads((d / "config.json").read_text()))
    ref, cfg, _ = import_s2pro(d)
    model, tok, codec_dir = load_pretrained(d)
    assert codec_dir is None and tok.semantic_start == cfg.semantic_start
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    fresh = DualAR(cfg).bfloat16()
    load_init_weights(fresh, d)
    tokens, codes, audio = batch()
    with torch.no_grad():
        assert torch.equal(fresh(tokens, codes, audio).logits, ref(tokens, codes, audio).logits)


@pytest.mark.parametrize("fast_dim", [32, 16])
def test_imported_model_round_trips_through_an_s2train_bundle(tmp_path, fast_dim):
    """The released layout (no fast QK-norm, biased fast input projection) is a DualARConfig, so a fine-tuned
    S2 Pro saved as an s2train bundle reloads through load_pretrained with the same weights and logits."""
    from s2train.bundle import export_bundle, load_pretrained

    raw = mini_config(fast_dim=fast_dim)
    d = write_checkpoint(tmp_path / "s2-mini", raw, upstream_tensors(raw))
    model, cfg, _ = import_s2pro(d)
    assert (cfg.qk_norm, cfg.fast_qk_norm, cfg.fast_input_bias) == (True, False, fast_dim != 32)
    fresh = DualAR(cfg)  # the config alone builds the released structure, without adapt_model
    assert fresh.state_dict().keys() == model.state_dict().keys()
    tok = S2Tokenizer.load(write_tokenizer(tmp_path / "tok"))
    out = export_bundle(model.float(), cfg, tok, None, tmp_path / "bundle")
    back, _, _ = load_pretrained(out)
    sd, sd2 = model.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k].to(sd[k].dtype)) for k in sd)
    assert back.config.rope_fp32_angles  # the bundle rebuilds upstream's RoPE tables, not s2train's fp64 ones
    for name, buf in model.named_buffers():
        assert torch.equal(buf, dict(back.named_buffers())[name]), name
    tokens, codes, audio = batch()
    with torch.no_grad():
        a, b = model(tokens, codes, audio).logits, back.float()(tokens, codes, audio).logits
    assert torch.equal(a, b)


def test_export_cli_writes_a_trained_bundle_back_in_the_released_layout(mini, tmp_path):
    """`python -m s2train.ar.upstream export <bundle> <out> --base <s2-pro dir>`: the weights of a (here
    perturbed, i.e. "fine-tuned") model in upstream key names, the base's other config fields, tokenizer files
    and codec.pth carried over; the output imports strictly to the same weights."""
    from s2train.ar.upstream_cli import main
    from s2train.bundle import export_bundle, load_pretrained

    d, raw, tensors = mini
    write_tokenizer(d, config=raw)
    (d / "codec.pth").write_bytes(b"codec weights stand-in")
    model, tok, _ = load_pretrained(d)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    bundle = export_bundle(model, None, tok, None, tmp_path / "run" / "export")
    out = tmp_path / "s2-finetuned"
    main(["export", str(bundle), str(out), "--base", str(d), "--shard-size", "8000"])
    written = read_dir(out)
    assert written.keys() == tensors.keys() and all(v.dtype == torch.bfloat16 for v in written.values())
    assert len(set(json.loads((out / "model.safetensors.index.json").read_text())["weight_map"].values())) > 1
    changed = [k for k in tensors if not torch.equal(written[k], tensors[k])]
    assert len(changed) == len(tensors)  # every tensor carries the update
    back, _, _ = import_s2pro(out)
    ref = model.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in back.state_dict().items())
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] == raw["eos_token_id"] and config["model_type"] == "fish_qwen3_omni"
    assert (
        config["text_config"]["vocab_size"] == VOCAB and config["audio_decoder_config"]["num_codebooks"] == K
    )
    assert (out / "tokenizer.json").read_bytes() == (d / "tokenizer.json").read_bytes()
    assert (out / "codec.pth").read_bytes() == b"codec weights stand-in"
    # re-exporting a released dir over itself, or from a base that is not a released dir: clear errors
    with pytest.raises(ValueError, match="base directory"):
        main(["export", str(bundle), str(d), "--base", str(d)])
    with pytest.raises(ValueError, match="not a released S2 Pro directory"):
        main(["export", str(bundle), str(tmp_path / "x"), "--base", str(bundle)])
