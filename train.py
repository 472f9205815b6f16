"""Train an s2train model: `python train.py recipe=<codec|pretrain|finetune|lora|grpo> [overrides]`."""

import os
from pathlib import Path

import hydra

from s2train.run_dir import register_resolvers

os.environ.setdefault("S2TRAIN_ROOT", str(Path(__file__).resolve().parent))
register_resolvers()  # hydra.run.dir of a resumed run is the run's own folder (configs/hydra/train.yaml)


@hydra.main(version_base="1.3", config_path="configs", config_name="train.yaml")
def main(cfg) -> None:
    from s2train.entry import train  # lazy: `--help` and `--cfg job` stay fast

    train(cfg)


if __name__ == "__main__":
    main()
