"""Dual-AR model (pure PyTorch): `DualARConfig`, `DualAR`, `DualAROutput`, named sizes."""

from s2train.ar.config import DualARConfig
from s2train.ar.dual_ar import DualAR, DualAROutput
from s2train.ar.sizes import PRESETS, count_params, preset

__all__ = ["PRESETS", "DualAR", "DualARConfig", "DualAROutput", "count_params", "preset"]
