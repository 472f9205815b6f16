"""Fine-tuning takes the tokenizer of `init_from` (s2train.entry._tokenizer_from_init, s2train.bundle):
`recipe=finetune init_from=<bundle> data.dataset_dir=<new codes>` trains no tokenizer on the new texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from s2train.data.codes import ensure_tokenizer, write_synthetic_codes
from s2train.entry import ConfigError, train
from s2train.text.tokenizer import S2Tokenizer
from tests.conftest import compose_config

COMMON = ["model=tiny", "codec=tiny", "data.batch_size=4", "data.num_semantic=64", "logger=none",
          "callbacks=none", "++trainer.limit_val_batches=0", "++trainer.enable_progress_bar=false",
          "module.warmup_steps=1", "trainer.max_steps=2"]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Single-threaded tiny models (tests/conftest.py::one_thread)."""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A tiny Dual-AR bundle pretrained 2 steps on one code dataset, with its own tokenizer (vocab 300)."""
    root = tmp_path_factory.mktemp("base")
    codes = write_synthetic_codes(root / "codes", num_items=12, num_codebooks=4, seed=1)
    overrides = ["recipe=pretrain", *COMMON, f"data.dataset_dir={codes}", f"data.tokenizer_dir={root / 'tok'}",
                 "data.vocab_size=300", f"export_dir={root / 'bundle'}"]  # fmt: skip
    train(compose_config("train", overrides, root / "run"))
    return root / "bundle"


@pytest.fixture(scope="module")
def new_codes(tmp_path_factory) -> Path:
    return write_synthetic_codes(
        tmp_path_factory.mktemp("mine") / "codes", num_items=12, num_codebooks=4, seed=7
    )


@pytest.mark.parametrize("recipe", ["finetune", "lora"])
def test_finetune_uses_the_bundles_tokenizer_and_writes_none(bundle, new_codes, tmp_path, recipe):
    data_dir = tmp_path / "data"  # where codes_demo would have trained one: <data_dir>/demo/tokenizer
    overrides = [f"recipe={recipe}", *COMMON, f"init_from={bundle}", f"data.dataset_dir={new_codes}",
                 f"paths.data_dir={data_dir}", f"export_dir={tmp_path / 'export'}"]  # fmt: skip
    cfg = compose_config("train", overrides, tmp_path / "run")
    assert cfg.data.tokenizer_dir is None
    metrics = train(cfg)
    assert metrics["train/loss"] > 0
    assert not data_dir.exists()
    # the only tokenizer written is the exported bundle's copy
    assert list(tmp_path.rglob("tokenizer.json")) == [tmp_path / "export" / "tokenizer" / "tokenizer.json"]
    assert cfg.data.tokenizer_dir == str((bundle / "tokenizer").resolve())
    exported = S2Tokenizer.load(tmp_path / "export" / "tokenizer")
    assert exported.vocab_size == S2Tokenizer.load(bundle / "tokenizer").vocab_size
    assert not list(new_codes.parent.glob("**/tokenizer.json"))  # nothing written next to the new codes


def test_a_mismatching_tokenizer_dir_names_the_fix(bundle, new_codes, tmp_path):
    other = tmp_path / "other_tok"
    texts = [f"completely different sentence number {i} with new words" for i in range(40)]
    ensure_tokenizer(other, texts, 280, 64, None)
    base = ["recipe=finetune", *COMMON, f"init_from={bundle}", f"data.dataset_dir={new_codes}"]
    with pytest.raises(
        ConfigError, match=r"is not the tokenizer of init_from.*leave data.tokenizer_dir unset"
    ):
        train(compose_config("train", [*base, f"data.tokenizer_dir={other}"], tmp_path / "a"))
    missing = tmp_path / "no_tok"
    with pytest.raises(ConfigError, match=r"holds no tokenizer.*leave data.tokenizer_dir unset"):
        train(compose_config("train", [*base, f"data.tokenizer_dir={missing}"], tmp_path / "b"))
    assert not missing.exists()  # and none was trained there


def test_the_bundles_own_tokenizer_given_explicitly_is_accepted(bundle, new_codes, tmp_path):
    overrides = ["recipe=finetune", *COMMON, f"init_from={bundle}", f"data.dataset_dir={new_codes}",
                 f"data.tokenizer_dir={bundle / 'tokenizer'}", "trainer.max_steps=1"]  # fmt: skip
    assert train(compose_config("train", overrides, tmp_path))["train/loss"] > 0


def test_shape_mismatch_error_names_the_tokenizer(bundle):
    from s2train.ar.config import DualARConfig
    from s2train.ar.dual_ar import DualAR
    from s2train.bundle import load_init_weights, read_bundle_config

    d = read_bundle_config(bundle)["model"]
    model = DualAR(DualARConfig.from_dict({**d, "vocab_size": d["vocab_size"] + 64}))
    with pytest.raises(
        ValueError, match=rf"text vocabulary differs.*data.tokenizer_dir={bundle / 'tokenizer'}"
    ):
        load_init_weights(model, bundle)
