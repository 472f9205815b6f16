"""Concatenate code datasets made by `s2train.data.encode` with the same codec into one training dataset.

    python scripts/concat_codes.py data/codes_big data/codes_s0 data/codes_s3 ...

Used with `scripts/merge_demo_corpora.py`: the first dataset keeps its val/test/heldout items, the others
bring train items only. Refuses datasets whose `summary.json` name different codecs or that share item ids.
Writes `summary.json` with the codec, the sources and the item counts per split.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("inputs", nargs="+", type=Path)
    a = ap.parse_args()
    from datasets import concatenate_datasets, load_from_disk

    codecs = set()
    parts = []
    for d in a.inputs:
        summary = d / "summary.json"
        if not summary.is_file():
            raise SystemExit(f"{d}: no summary.json (not a dataset written by s2train.data.encode)")
        codecs.add(json.loads(summary.read_text()).get("codec"))
        parts.append(load_from_disk(str(d)))
    if len(codecs) != 1:
        raise SystemExit(f"the inputs were coded by different codecs: {sorted(map(str, codecs))}")
    ds = concatenate_datasets(parts)
    dup = [i for i, n in Counter(ds["id"]).items() if n > 1]
    if dup:
        raise SystemExit(f"{len(dup)} item ids occur twice (e.g. {dup[:3]}): prefix the extra corpora's ids")
    ds.save_to_disk(str(a.out))
    splits = dict(Counter(ds["split"]))
    (a.out / "summary.json").write_text(
        json.dumps(
            {
                "codec": codecs.pop(),
                "sources": [str(p) for p in a.inputs],
                "items": len(ds),
                "splits": splits,
            },
            indent=1,
        )
    )
    print(f"{a.out}: {len(ds)} items {splits}")


if __name__ == "__main__":
    main()
