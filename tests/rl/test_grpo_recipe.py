"""The grpo recipe composes and runs one step through s2train.entry.train (fake generate, cheap rewards)."""

import pytest
from hydra import compose, initialize_config_dir

from s2train.entry import train

from .conftest import CONFIG_DIR


def compose_grpo(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train.yaml", overrides=["recipe=grpo", *overrides])


def test_recipe_requires_init_from(tmp_path):
    cfg = compose_grpo([f"paths.output_dir={tmp_path}", "logger=none", "callbacks=none"])
    # The recipe's `init_from: ???` is named by the entry before anything is built.
    with pytest.raises(Exception, match="init_from"):
        train(cfg)


def test_recipe_fast_dev_run(tiny_bundle, tmp_path):
    """Real pipeline: InferenceEngine rollouts, codec decode, length/repetition rewards, one update."""
    cfg = compose_grpo(
        [
            f"init_from={tiny_bundle / 'bundle'}",
            f"paths.output_dir={tmp_path}",
            "logger=none",
            "callbacks=none",
            "debug=fast_dev_run",
            "data.manifest=null",
            f"data.prompts={tiny_bundle / 'prompts.jsonl'}",
            "module.rewards.intelligibility=0",
            "module.rewards.speaker_sim=0",
            "module.group_size=2",
            "module.max_frames=3",
        ]
    )
    metrics = train(cfg)
    assert "rl/reward/total" in metrics and "rl/completion/mean_frames" in metrics
    assert 1 <= metrics["rl/completion/mean_frames"] <= 3
