"""Device and dtype choice, shared by every model-running package."""

from __future__ import annotations

import torch

from segloop.errors import ConfigError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` -> cuda if available, else mps, else cpu; an explicit device must exist."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("base.device: 'cuda' was asked for but torch sees no CUDA GPU; "
                          "set base.device to 'auto' or 'cpu'")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                   and torch.backends.mps.is_available()):
        raise ConfigError("base.device: 'mps' was asked for but is not available; "
                          "set base.device to 'auto' or 'cpu'")
    return torch.device(requested)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The compute dtype: half precision only on accelerators (CPU always float32)."""
    if device.type == "cpu":
        return torch.float32
    return DTYPES[name]
