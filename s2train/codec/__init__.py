"""Neural audio codec (pure torch): the ``Codec`` interface and the causal DAC-style RVQ codec."""

from s2train.codec.interface import Codec, build_codec, load_codec, save_codec
from s2train.codec.model import CodecOutput, DACStyleCodec
from s2train.codec.quantizer import ResidualVQ
from s2train.codec.streaming import StreamDecoder, StreamEncoder

__all__ = [
    "Codec",
    "CodecOutput",
    "DACStyleCodec",
    "ResidualVQ",
    "StreamDecoder",
    "StreamEncoder",
    "build_codec",
    "load_codec",
    "save_codec",
]
