"""Every `python -m s2train....` command answers `--help` with its usage (exit 0), not an argument error."""

from __future__ import annotations

import importlib

import pytest

# module -> a word its usage must show
KEY_VALUE_CLIS = {
    "s2train.infer": "bundle=",
    "s2train.data.encode": "val_fraction",
    "s2train.data.demo": "out=data/demo",
    "s2train.eval.text_use": "codes=",
    "s2train.text.g2p": "mark",
}


@pytest.mark.parametrize("module", sorted(KEY_VALUE_CLIS))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage(module, flag, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exc:
        main([flag])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert KEY_VALUE_CLIS[module] in out and "expected key=value" not in out


@pytest.mark.parametrize("module", ["s2train.ar.upstream", "s2train.codec.upstream"])
def test_argparse_clis_help(module, capsys):
    mod = importlib.import_module(module)
    main = getattr(mod, "main", None) or importlib.import_module("s2train.ar.upstream_cli").main
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_eval_help_shows_its_own_groups():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "eval.py", "--help"], cwd=root, capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    assert "suite.evalset.path" in out and "recipe:" not in out and "lora:" not in out
    for group in ("suite", "logger"):  # the hand-written list matches the config folders
        names = ", ".join(sorted(p.stem for p in (root / "configs" / group).glob("*.yaml")))
        assert f"{group}: {names}" in out
