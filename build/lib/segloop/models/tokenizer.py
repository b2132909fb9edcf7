"""A tiny CLIP tokenizer that segloop writes itself, so tests need no hub download.

The vocabulary is CLIP's byte-level alphabet: the 256 byte characters, the same with the
end-of-word suffix ``</w>``, and the two special tokens (514 entries), with no merges, so
every word becomes its characters. It is written as ``vocab.json``, ``merges.txt`` and
``tokenizer_config.json`` and read back through ``CLIPTokenizer.from_pretrained``: the
same loader a real model folder goes through.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def tiny_vocab() -> dict[str, int]:
    """Token -> id: byte characters, the same with ``</w>``, then BOS and EOS (514 ids)."""
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + [BOS, EOS]
    return {token: i for i, token in enumerate(tokens)}


def write_tiny_clip_tokenizer(folder: str | Path, max_length: int = 77) -> Path:
    """Write the tiny tokenizer files into ``folder`` (created); returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(tiny_vocab()))
    (out / "merges.txt").write_text("#version: 0.2\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length,
              "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return out


def load_tiny_clip_tokenizer(folder: str | Path, max_length: int = 77) -> CLIPTokenizer:
    """Write (if missing) and load the tiny tokenizer from ``folder``."""
    out = Path(folder)
    if not (out / "vocab.json").is_file():
        write_tiny_clip_tokenizer(out, max_length)
    return CLIPTokenizer.from_pretrained(str(out), local_files_only=True)
