"""Run one decode frame eagerly, as a captured CUDA graph, or through torch.compile(reduce-overhead).

Warm-up and capture run the frame for real, which advances the decode state; the runner snapshots the small
state tensors first and restores them afterwards. Cache writes made during warm-up land in the slot the
next real frame overwrites before reading, so they are harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

log = logging.getLogger(__name__)

MODES = ("eager", "cudagraph", "compile")


def resolve_mode(mode: str | None, device: torch.device) -> str:
    """`None`/"auto" -> "cudagraph" on CUDA, "eager" elsewhere; validates explicit modes.

    "compile" also works on CPU (inductor C++ kernels, minutes of compile time): an opt-in for long runs.
    """
    if mode in (None, "auto"):
        return "cudagraph" if device.type == "cuda" else "eager"
    if mode not in MODES:
        raise ValueError(f"decode mode must be one of {MODES} or 'auto', got {mode!r}")
    if mode == "cudagraph" and device.type != "cuda":
        raise ValueError(f"decode mode {mode!r} needs a CUDA device, model is on {device}")
    return mode


class FrameRunner:
    """Calls `fn()` (one decode frame over static buffers) in the chosen mode.

    Args:
        fn: closure over the model, decode state, caches and sampling tensors.
        state_tensors: small tensors to snapshot/restore around warm-up and capture.
        static_tensors: every buffer the frame reads or writes (marked static for torch.compile).
        mode: "eager", "cudagraph" or "compile".
        device: where the frame runs.
    """

    def __init__(
        self,
        fn: Callable[[], Tensor],
        state_tensors: Sequence[Tensor],
        static_tensors: Sequence[Tensor],
        mode: str,
        device: torch.device,
    ) -> None:
        self.fn, self.mode, self.device = fn, mode, torch.device(device)
        self._state = list(state_tensors)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._compiled: Callable[[], Tensor] | None = None
        self._static = list(static_tensors)
        self.ready = mode == "eager"

    def _snapshot(self) -> list[Tensor]:
        return [t.clone() for t in self._state]

    def _restore(self, saved: list[Tensor]) -> None:
        for t, s in zip(self._state, saved):
            t.copy_(s)

    def prepare(self) -> None:
        """Warm up and capture/compile (excluded from timings); decode state is left unchanged."""
        if self.ready:
            return
        saved = self._snapshot()
        if self.mode == "cudagraph":
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self.fn()
            torch.cuda.current_stream().wait_stream(stream)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self.fn()
        elif self.mode == "compile":
            for t in self._static:
                torch._dynamo.mark_static_address(t)
            # On CUDA: CUDA graphs over the compiled frame; on CPU: inductor's fused C++ kernels only.
            compile_mode = "reduce-overhead" if self.device.type == "cuda" else None
            # static shapes: a session has one batch and cache size, and a dynamic graph would give up the CUDA graph
            self._compiled = torch.compile(self.fn, mode=compile_mode, fullgraph=True, dynamic=False)
            for _ in range(3):  # cudagraph trees record on the second/third call
                self._compiled()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self._restore(saved)
        self.ready = True
        log.debug("decode frame prepared in %s mode", self.mode)

    def __call__(self) -> Tensor:
        if not self.ready:
            self.prepare()
        if self.mode == "cudagraph":
            self._graph.replay()
            return None
        if self.mode == "compile":
            return self._compiled()
        return self.fn()
