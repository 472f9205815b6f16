"""Evaluate a checkpoint: `python eval.py ckpt=<bundle> suite=<quick|full|codec|tags|speed>`."""

import os
from pathlib import Path

import hydra

os.environ.setdefault("S2TRAIN_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="eval.yaml")
def main(cfg) -> None:
    from s2train.entry import evaluate  # lazy: `--help` and `--cfg job` stay fast

    evaluate(cfg)


if __name__ == "__main__":
    main()
