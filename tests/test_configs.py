"""Every config option composes and resolves; the CLI shims answer --help and --cfg job for every recipe."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONFIG_DIR, ROOT, compose_config


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


RECIPES = _options("recipe")


def _resolve(cfg) -> None:
    # Interpolations to Hydra's runtime are redirected by compose_config; `???` values stay missing.
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(container, dict)


@pytest.mark.parametrize("group", ["trainer", "logger", "callbacks", "debug", "data", "codec", "model"])
def test_every_option_of_group_composes(group, tmp_path):
    options = [o for o in _options(group) if o != "default" or group in ("callbacks", "debug")]
    assert options, f"config group {group} is empty"
    for option in options:
        cfg = compose_config("train", [f"{group}={option}"], tmp_path)
        _resolve(cfg)


def test_recipes_exist():
    assert RECIPES, "no recipe configs in configs/recipe"


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_composes_with_debug(recipe, tmp_path):
    cfg = compose_config("train", [f"recipe={recipe}", "debug=fast_dev_run", "++init_from=/x"], tmp_path)
    assert cfg.module is not None and "_target_" in cfg.module, f"recipe {recipe} sets no module"
    assert cfg.trainer.fast_dev_run is True
    _resolve(cfg)


def test_no_recipe_is_a_clear_error(tmp_path):
    from s2train.entry import ConfigError, train

    cfg = compose_config("train", [], tmp_path)
    with pytest.raises(ConfigError, match="recipe="):
        train(cfg)


def test_config_typo_is_hydra_error(tmp_path):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="trainr"):
        compose_config("train", ["trainr=gpu"], tmp_path)
    with pytest.raises(ConfigCompositionException, match="no_such_recipe"):
        compose_config("train", ["recipe=no_such_recipe"], tmp_path)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_train_cli_help():
    res = _run(["train.py", "--help"])
    assert res.returncode == 0, res.stderr
    assert "recipe" in res.stdout and "trainer" in res.stdout


def test_train_cli_cfg_job_every_recipe():
    for recipe in RECIPES:
        res = _run(["train.py", f"recipe={recipe}", "++init_from=/x", "--cfg", "job"])
        assert res.returncode == 0, f"{recipe}: {res.stderr[-2000:]}"
        assert "module:" in res.stdout


def test_eval_cli_help():
    res = _run(["eval.py", "--help"])
    assert res.returncode == 0, res.stderr
    assert "suite" in res.stdout
