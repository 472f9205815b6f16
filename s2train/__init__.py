"""s2train: train, align and evaluate Dual-AR text-to-speech models of the Fish Audio S2 Pro kind."""

__version__ = "0.1.0"


def load_pretrained(path):
    """Load an exported inference bundle (see `s2train.bundle.load_pretrained`)."""
    from s2train.bundle import load_pretrained as _load

    return _load(path)
