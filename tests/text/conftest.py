"""Shared fixtures for the text front-end tests."""

import pytest

from s2train.text import S2Tokenizer

CORPUS = [
    "Hello there, how are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "<|speaker:0|>Hello [laugh] there <|speaker:1|>[whisper] see you",
    "Numbers like 1234 and symbols #@! also appear.",
] * 10


@pytest.fixture(scope="session")
def tok() -> S2Tokenizer:
    return S2Tokenizer.train(CORPUS, vocab_size=320, num_semantic=32)
