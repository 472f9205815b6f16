"""`hydra.run.dir` of a training run: new timestamped folder, or the folder of the run being resumed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from s2train.run_dir import latest_run, register_resolvers, resolve_run_dir, run_folder_of


def _run(root: Path, name: str, with_ckpt: bool = True, age: float = 0.0) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    if with_ckpt:
        last = run / "checkpoints" / "last.ckpt"
        last.parent.mkdir()
        last.write_bytes(b"x")
        os.utime(last, (time.time() - age, time.time() - age))
    return run


def test_resume_picks_the_run_with_the_newest_last_ckpt(tmp_path):
    old = _run(tmp_path, "2026-01-02_00-00-00", age=100)  # newer name, older checkpoint
    new = _run(tmp_path, "2026-01-01_00-00-00", age=1)
    _run(tmp_path, "2026-01-03_00-00-00", with_ckpt=False)
    assert latest_run(tmp_path) == new != old
    assert resolve_run_dir(str(tmp_path), "STAMP", resume=True) == str(new)
    assert resolve_run_dir(str(tmp_path), "STAMP", resume="true") == str(new)
    assert resolve_run_dir(str(tmp_path), "STAMP", resume=False) == str(tmp_path / "STAMP")
    assert resolve_run_dir(str(tmp_path / "none"), "STAMP", resume=True) == str(tmp_path / "none" / "STAMP")


def test_ckpt_path_inside_a_run_reuses_that_run(tmp_path):
    run = _run(tmp_path, "a", age=50)
    _run(tmp_path, "b", age=1)
    assert run_folder_of(run / "checkpoints" / "step_0000500.ckpt") == run
    assert resolve_run_dir(
        str(tmp_path), "S", resume=True, ckpt_path=str(run / "checkpoints" / "last.ckpt")
    ) == str(run)
    loose = tmp_path / "elsewhere" / "model.ckpt"
    assert run_folder_of(loose) is None
    assert resolve_run_dir(str(tmp_path), "S", ckpt_path=str(loose)) == str(tmp_path / "S")


def test_train_config_resolves_hydra_run_dir_to_the_resumed_run(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from tests.conftest import CONFIG_DIR

    register_resolvers()
    run = _run(tmp_path / "pretrain" / "runs", "2026-01-01_00-00-00")

    def run_dir(*overrides: str) -> str:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(
                "train",
                [f"paths.log_dir={tmp_path}", "recipe=pretrain", *overrides],
                return_hydra_config=True,
            )
        GlobalHydra.instance().clear()
        cfg.hydra.runtime.output_dir = "unused"  # `${hydra:...}` needs a HydraConfig; not what we read
        return str(OmegaConf.select(cfg, "hydra.run.dir"))

    assert run_dir("resume=true") == str(run)
    assert run_dir(f"ckpt_path={run}/checkpoints/last.ckpt") == str(run)
    fresh = Path(run_dir())
    assert fresh.parent == run.parent and fresh != run
