"""Optional grapheme-to-phoneme front-end: transcripts become espeak-ng IPA before tokenization.

A small Dual-AR trained on a few hours of speech has to learn how every word sounds from a handful of
examples when it reads word-level BPE tokens; with phonemes the units are shared across words. The front-end
belongs to the tokenizer (`S2Tokenizer.g2p`, saved in its metadata), so training, bundles and inference apply
the same conversion by construction. Speaker markers (`<|speaker:i|>`), `[tags]` and punctuation are kept
verbatim; only the word runs between them are converted.

    S2Tokenizer.train(texts, g2p="espeak")          # en-us
    S2Tokenizer.train(texts, g2p="espeak:en-gb")    # any espeak-ng voice name

espeak-ng is a Debian package (`apt-get install espeak-ng`; `scripts/setup.sh` installs it). Its output can
differ between espeak-ng versions: a model trained with one version is best used with the same one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

# Kept verbatim: speaker markers, [tags], punctuation runs.
_KEEP = re.compile(r"(<\|speaker:\d+\|>|\[[^\]]*\]|[.,!?;:]+)")
_SPACE_BEFORE_PUNCT = re.compile(r" ([.,!?;:]+)")


class EspeakG2P:
    """Text -> IPA with the espeak-ng binary (one process per distinct word run, cached).

    Args:
        voice: espeak-ng voice (language) name, e.g. "en-us".
        binary: the espeak-ng executable.
    Raises:
        FileNotFoundError: espeak-ng is not installed.
    """

    def __init__(self, voice: str = "en-us", binary: str = "espeak-ng") -> None:
        self.voice = voice
        self.binary = shutil.which(binary)
        if self.binary is None:
            raise FileNotFoundError(
                f"g2p=espeak needs the {binary!r} executable: apt-get install espeak-ng "
                "(scripts/setup.sh installs it), or train without g2p"
            )
        self._cache: dict[str, str] = {}

    def _segment(self, words: str) -> str:
        got = self._cache.get(words)
        if got is None:
            proc = subprocess.run(
                [self.binary, "-q", "--ipa", "-v", self.voice],
                input=words, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(
                    f"espeak-ng failed on {words!r} (voice {self.voice}): {proc.stderr.strip()}"
                )
            got = " ".join(proc.stdout.split())
            self._cache[words] = got
        return got

    @staticmethod
    def _parts(text: str) -> list[tuple[bool, str]]:
        """(keep verbatim?, piece) for the non-blank pieces of `text`."""
        return [(bool(_KEEP.fullmatch(p)), p.strip()) for p in _KEEP.split(text) if p.strip()]

    def __call__(self, text: str) -> str:
        out = [p if keep else self._segment(p) for keep, p in self._parts(text)]
        return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(o for o in out if o))

    def prefetch(self, texts: Iterable[str], workers: int = 4) -> None:
        """Convert the distinct word runs of `texts` in a few threads (fills the cache for later calls)."""
        todo = {p for t in texts for keep, p in self._parts(t) if not keep and p not in self._cache}
        if todo:
            with ThreadPoolExecutor(workers) as ex:
                list(ex.map(self._segment, sorted(todo)))


def normalize_spec(spec: str | None) -> str | None:
    """The one spelling of "no g2p": None ("" and "none", as configs write it, mean the same)."""
    return None if spec in (None, "", "none") else spec


def build_g2p(spec: str | None) -> Callable[[str], str] | None:
    """`None`/"none" -> None (text used as is); "espeak" or "espeak:<voice>" -> an `EspeakG2P`."""
    spec = normalize_spec(spec)
    if spec is None:
        return None
    name, _, voice = spec.partition(":")
    if name != "espeak":
        raise ValueError(f"unknown g2p {spec!r}: use null, 'espeak' or 'espeak:<voice>' (e.g. espeak:en-gb)")
    return EspeakG2P(voice or "en-us")


def phonemize_codes(src: str, dst: str, spec: str = "espeak") -> int:
    """Copy an encoded dataset (`python -m s2train.data.encode`) with its `text` column converted by `spec`.

    For machines without espeak-ng (the lent GPU machines): train there on the converted copy with a plain
    tokenizer, then `mark` the exported bundle's tokenizer with the same `spec` so inference converts raw
    text the same way. Returns the number of rows.
    """
    import json
    from pathlib import Path

    from datasets import load_from_disk

    convert = build_g2p(spec)
    if convert is None:
        raise ValueError("phonemize_codes needs a g2p spec such as 'espeak'")
    ds = load_from_disk(src)
    texts = ds["text"]
    convert.prefetch(texts)
    ds = ds.remove_columns("text").add_column("text", [convert(t) for t in texts])
    ds.save_to_disk(dst)
    summary = Path(src) / "summary.json"
    if summary.is_file():
        meta = json.loads(summary.read_text())
        meta["text_g2p"] = spec
        (Path(dst) / "summary.json").write_text(json.dumps(meta, indent=2))
    return len(texts)


def mark_tokenizer(tokenizer_dir: str, spec: str) -> None:
    """Record `spec` as the g2p of a tokenizer trained on already-converted text (see `phonemize_codes`)."""
    from s2train.text.tokenizer import S2Tokenizer

    build_g2p(spec)  # validates the spec (and that espeak-ng is here, where the bundle will be used)
    tok = S2Tokenizer.load(tokenizer_dir)
    tok.g2p = spec
    tok.save(tokenizer_dir)


def main(argv: list[str] | None = None) -> None:
    """`python -m s2train.text.g2p codes <src> <dst> [spec]` | `mark <tokenizer_dir> [spec]` | `say <text>`."""
    import sys

    from s2train.cli import exit_on_help

    args = sys.argv[1:] if argv is None else argv
    exit_on_help(args, main.__doc__)
    if args[:1] == ["codes"] and len(args) in (3, 4):
        n = phonemize_codes(args[1], args[2], args[3] if len(args) == 4 else "espeak")
        print(f"{n} rows -> {args[2]}")
    elif args[:1] == ["mark"] and len(args) in (2, 3):
        mark_tokenizer(args[1], args[2] if len(args) == 3 else "espeak")
        print(f"{args[1]}: g2p={args[2] if len(args) == 3 else 'espeak'}")
    elif args[:1] == ["say"] and len(args) >= 2:
        print(EspeakG2P()(" ".join(args[1:])))
    else:
        raise SystemExit(main.__doc__)


if __name__ == "__main__":
    main()
