"""Copy a random, size-capped subset of a manifest's items (and their wavs) into a new corpus folder.

Used to ship a slice of the large demo corpus to a machine with a transfer limit (the GPU run that trained
the shipped demo codec, see docs/checkpoints.md):

    python scripts/subset_manifest.py data/demo_large/manifest.jsonl data/gpu_codec --max-mb 46 --splits train val
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-mb", type=float, required=True, help="cap on the copied wav bytes (MB)")
    ap.add_argument("--splits", nargs="+", default=["train"], help="splits to draw from")
    ap.add_argument("--val-items", type=int, default=16, help="items of the `val` split to keep first")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    src = args.manifest.parent
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] in args.splits]
    if not rows:
        raise SystemExit(f"no items of splits {args.splits} in {args.manifest}")
    random.Random(args.seed).shuffle(rows)
    val = [r for r in rows if r["split"] == "val"][: args.val_items]
    rest = [r for r in rows if r["split"] != "val"]
    budget, picked = args.max_mb * 1e6, []
    for r in val + rest:
        size = (src / r["path"]).stat().st_size
        if size > budget:
            break
        budget -= size
        picked.append(r)
    (args.out / "wavs").mkdir(parents=True, exist_ok=True)
    for r in picked:
        shutil.copy2(src / r["path"], args.out / r["path"])
    with open(args.out / "manifest.jsonl", "w") as f:
        for r in picked:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    hours = sum(r["duration"] for r in picked) / 3600
    print(f"{len(picked)} items ({hours:.2f} h, {args.max_mb - budget / 1e6:.1f} MB) -> {args.out}")


if __name__ == "__main__":
    main()
