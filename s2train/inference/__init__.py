"""Inference (pure PyTorch): KV caches, sampling, prefill/decode_frame, batched generate, TTS facade."""

from s2train.inference.engine import DecodeCaches, DecodeConsts, DecodeState, decode_frame, prefill
from s2train.inference.generate import GenerationResult, InferenceEngine, generate
from s2train.inference.kv_cache import KVCache, VoicePrefixCache
from s2train.inference.naive import naive_generate
from s2train.inference.sampling import SamplingParams, SamplingTensors

__all__ = [
    "DecodeCaches",
    "DecodeConsts",
    "DecodeState",
    "GenerationResult",
    "InferenceEngine",
    "KVCache",
    "SamplingParams",
    "SamplingTensors",
    "VoicePrefixCache",
    "decode_frame",
    "generate",
    "naive_generate",
    "prefill",
]
