"""Copy a random, size-capped subset of a manifest's items (and their wavs) into a new corpus folder.

Used to ship a slice of the large demo corpus to a machine with a transfer limit (the GPU run that trained
the shipped demo codec, see docs/checkpoints.md):

    python scripts/subset_manifest.py data/demo_large/manifest.jsonl data/gpu_codec --max-mb 46 --splits train val
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from s2train.data.manifest import read_manifest, write_manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-mb", type=float, required=True, help="cap on the copied wav bytes (MB)")
    ap.add_argument("--splits", nargs="+", default=["train"], help="splits to draw from")
    ap.add_argument("--val-items", type=int, default=16, help="items of the `val` split to keep first")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    items = [it for it in read_manifest(args.manifest) if it.split in args.splits]  # absolute paths
    if not items:
        raise SystemExit(f"no items of splits {args.splits} in {args.manifest}")
    random.Random(args.seed).shuffle(items)
    val = [it for it in items if it.split == "val"][: args.val_items]
    rest = [it for it in items if it.split != "val"]
    budget, picked = args.max_mb * 1e6, []
    for it in val + rest:
        size = Path(it.path).stat().st_size
        if size > budget:
            break
        budget -= size
        picked.append(it)
    (args.out / "wavs").mkdir(parents=True, exist_ok=True)
    for it in picked:
        dst = args.out / "wavs" / Path(it.path).name
        shutil.copy2(it.path, dst)
        it.path = str(dst)
    write_manifest(picked, args.out / "manifest.jsonl")  # paths relative to the new folder
    hours = sum(it.duration for it in picked) / 3600
    print(f"{len(picked)} items ({hours:.2f} h, {args.max_mb - budget / 1e6:.1f} MB) -> {args.out}")


if __name__ == "__main__":
    main()
