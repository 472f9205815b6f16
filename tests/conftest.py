"""Shared fixtures: offline environment, the real Hydra config composed for tests, a tiny demo corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"

# Nothing in the test suite may reach a hub or the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["S2TRAIN_ROOT"] = str(ROOT)


def compose_config(name: str, overrides: list[str], output_dir: Path):
    """Compose `configs/<name>.yaml` like the CLI does, with outputs redirected to `output_dir`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name=name,
            overrides=[f"paths.output_dir={output_dir}", f"paths.log_dir={output_dir}", *overrides],
        )
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def compose_train(tmp_path):
    """`compose_train(*overrides)` -> composed train config writing under tmp_path."""

    def _compose(*overrides: str):
        return compose_config("train", list(overrides), tmp_path)

    return _compose


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Manifest of a tiny demo corpus (>= 8 voices, tags, dialogue, non-English), built once per session."""
    from s2train.data.demo import build_demo_corpus

    return Path(build_demo_corpus(tmp_path_factory.mktemp("demo_corpus"), size="tiny", seed=0))


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: tiny models are op-overhead bound, and extra intra-op threads only
    spin-wait on a shared 2-core machine (measured >10x slower). Directories opt in with an autouse alias."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
