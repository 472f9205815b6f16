"""Where a training run writes: a new timestamped folder, or the folder of the run it resumes.

`configs/hydra/train.yaml` sets `hydra.run.dir` through the `s2train_run_dir` resolver, so a resumed run
(`resume=true`, or `ckpt_path=<run>/checkpoints/<file>.ckpt`) writes its checkpoints, curves and logs next to
the ones it continues instead of starting a new folder. Imports nothing heavy: `train.py` registers the
resolver before Hydra composes the config.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

RESOLVER = "s2train_run_dir"


def latest_run(runs_root: str | Path) -> Path | None:
    """The run folder under `runs_root` whose `checkpoints/last.ckpt` was written last, or None."""
    found = [p for p in Path(runs_root).glob("*/checkpoints/last.ckpt") if p.is_file()]
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime).parent.parent


def run_folder_of(ckpt_path: str | Path) -> Path | None:
    """The run folder a checkpoint belongs to (`<run>/checkpoints/<file>`, `<run>` made by Hydra), or None."""
    p = Path(ckpt_path)
    run = p.parent.parent
    if p.parent.name == "checkpoints" and (
        (run / ".hydra").is_dir() or (run / "resolved_config.yaml").is_file()
    ):
        return run
    return None


def resolve_run_dir(
    runs_root: str, stamp: str, resume: bool | str | None = False, ckpt_path: str | None = None
) -> str:
    """`hydra.run.dir` of a training run.

    Args:
        runs_root: `<log_dir>/<task_name>/runs`.
        stamp: the new run's folder name (a timestamp).
        resume: continue the latest run of this task (the one with the newest `last.ckpt`), if any.
        ckpt_path: a checkpoint to continue from; its run folder is reused when it is one.

    Returns:
        The run folder to write to.
    """
    if ckpt_path:
        run = run_folder_of(ckpt_path)
    elif str(resume).lower() in ("true", "1", "yes"):
        run = latest_run(runs_root)
    else:
        run = None
    return str(run if run is not None else Path(runs_root) / stamp)


def register_resolvers() -> None:
    """Register `${s2train_run_dir:...}` (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, resolve_run_dir)
