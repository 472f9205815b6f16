"""Merge demo corpora rendered with different seeds into one manifest (more training speech, same eval sets).

    python scripts/merge_demo_corpora.py data/demo_large/manifest.jsonl data/demo_large_s1/manifest.jsonl \
        --out data/demo_xl/manifest.jsonl

The first manifest is kept whole (its val/test/heldout items stay the evaluation sets). From the others only
`train` items are taken whose text is not an evaluation sentence of the first, so validation stays on unseen
sentences; their ids get an `s<k>_` prefix. Audio paths are made absolute (the merged manifest lives
elsewhere).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifests", nargs="+", type=Path, help="first: the base corpus; then extra ones")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if len(a.manifests) < 2:
        raise SystemExit("give at least two manifests")
    rows: list[dict] = []
    held: set[str] = set()
    dropped = 0
    for k, path in enumerate(a.manifests):
        if not path.is_file():
            raise SystemExit(f"{path}: no such manifest")
        for line in path.open():
            x = json.loads(line)
            x["path"] = str((path.parent / x["path"]).resolve())
            if k == 0:
                if x["split"] != "train":
                    held.add(x["text"])
            elif x["split"] != "train" or x["text"] in held:
                dropped += 1
                continue
            else:
                x["id"] = f"s{k}_{x['id']}"
            rows.append(x)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("w") as f:
        for x in rows:
            f.write(json.dumps(x) + "\n")
    hours = sum(x["duration"] for x in rows if x["split"] == "train") / 3600
    print(
        f"{a.out}: {len(rows)} items {dict(Counter(x['split'] for x in rows))}, {hours:.2f} h of train speech; "
        f"{dropped} items of the extra corpora dropped (not train, or an evaluation sentence)"
    )


if __name__ == "__main__":
    main()
