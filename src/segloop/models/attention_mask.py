"""Mask injection into a diffusers UNet's attention (DenseDiffusion-style, G4Seg eq. 3-5).

G4Seg (Zhang et al. 2025, section II-C1) steers one denoising call with a coarse mask S by adding
``w * A`` to the pre-softmax attention logits of every attention layer:

* cross-attention (``attn2``, image queries x text keys):
  ``A_cross[i, j] = 1`` if query pixel ``i`` is inside the mask and key token ``j`` is one of
  the class-name tokens, else 0;
* self-attention (``attn1``, image x image): ``A_self[i, j] = 1`` if both pixels are inside
  the mask, else 0.

Logit convention. The logits here are the *scaled* ones, ``attn.scale * Q K^T`` (``scale =
1/sqrt(head_dim)``), so the attention becomes ``softmax(scale * Q K^T + w * A)``: for an
in-mask query, ``w`` multiplies the odds of every "matching" key by ``exp(w)``, whatever the
head width. The paper's eq. 5 writes ``softmax((Q K^T + alpha A) / sqrt(d))``, i.e. the same
with ``alpha = w * sqrt(d)``.

Mask to layer grid. A layer sees ``n`` query tokens on an ``h x w`` grid of the latent; the
grid is found by halving the latent's ``(H, W)`` with ceiling (what SD's stride-2 convs do)
until ``h * w == n``. The mask (any size, values in [0, 1]) is area-resized to ``(h, w)`` (the
fraction of each cell it covers) and a cell is "inside" when that fraction is > 0.5 (a
strict majority; exactly half is outside). Area resizing, unlike nearest, does not let one
sampled pixel decide a whole coarse cell.

The processor does what diffusers' ``AttnProcessor2_0`` does (norms, residual, rescale,
``scaled_dot_product_attention``) with the bias added to the float ``attn_mask``; for a kind
of layer whose weight is 0 it calls the layer's original processor instead, so ``w = 0``
reproduces the unmodified UNet bit for bit. The same bias goes to every batch element and
head (no classifier-free-guidance split: G4Seg makes one conditional call).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from segloop.errors import ConfigError, DataError
from segloop.models.attention_capture import layer_grid

#: The attention modules :func:`inject_mask` patches: transformer blocks' self (attn1) and
#: cross (attn2) attention.
INJECTED_LAYERS: tuple[str, ...] = ("attn1", "attn2")


def as_mask_tensor(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``mask``: (H, W) bool or float in [0, 1] (numpy or torch) -> (H, W) float32 CPU tensor.

    Raises :class:`DataError` for another shape, NaNs or values outside [0, 1].
    """
    tensor = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask)
    tensor = tensor.detach().to("cpu", torch.float32)
    if tensor.ndim != 2 or min(tensor.shape) < 1:
        raise DataError(f"injection mask has shape {tuple(tensor.shape)}; expected (H, W) with "
                        "H, W >= 1 (one class's mask, bool or float in [0, 1])")
    if not bool(torch.isfinite(tensor).all()) or tensor.min() < 0 or tensor.max() > 1:
        raise DataError(f"injection mask values span [{float(tensor.min())}, "
                        f"{float(tensor.max())}] (or hold NaN); expected values in [0, 1]: "
                        "pass a probability map or a boolean mask")
    return tensor


def mask_on_grid(mask: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(H, W) float mask in [0, 1] -> (h*w,) bool, row-major: the area-resized mask > 0.5."""
    area = F.interpolate(mask[None, None].float(), size=tuple(hw), mode="area")
    return (area[0, 0] > 0.5).reshape(-1)


def injection_bias(mask: torch.Tensor, latent_hw: tuple[int, int], n_queries: int,
                   n_keys: int, token_indices: Sequence[int] | None, weight: float
                   ) -> torch.Tensor:
    """``weight * A``: the (n_queries, n_keys) float32 logit bias of one layer.

    ``token_indices`` None: self-attention (``n_keys`` must equal ``n_queries``),
    ``A[i, j] = m[i] * m[j]``; else cross-attention, ``A[i, j] = m[i] * [j in
    token_indices]``, where ``m`` is :func:`mask_on_grid` on the layer's grid.
    """
    inside = mask_on_grid(mask, layer_grid(n_queries, latent_hw)).float()
    if token_indices is None:
        if n_keys != n_queries:
            raise DataError(f"self-attention with {n_queries} queries but {n_keys} keys: "
                            "cannot place an image mask on the keys")
        keys = inside
    else:
        bad = [int(j) for j in token_indices if not 0 <= int(j) < n_keys]
        if bad:
            raise DataError(f"class token indices {bad} are outside the {n_keys} text tokens "
                            "the cross-attention sees; pass indices into the tokenised prompt")
        keys = torch.zeros(n_keys)
        keys[list(token_indices)] = 1.0
    return float(weight) * inside[:, None] * keys[None, :]


class MaskInjection:
    """Attention processor adding ``w * A`` (module docstring) to one layer's logits.

    ``mask``: (H, W) bool or float in [0, 1]; ``token_indices``: the class-name positions in
    the text-encoder sequence (cross-attention keys); ``latent_hw``: the UNet input's (h, w);
    ``w_self`` / ``w_cross``: the weights for self- and cross-attention calls (a call is
    cross-attention when ``encoder_hidden_states`` is given). ``original``: the processor
    to call when the applicable weight is 0 (default: a fresh ``AttnProcessor2_0``).
    ``cache``: a dict shared between layers to reuse biases of equal shape.
    """

    def __init__(self, mask: np.ndarray | torch.Tensor, token_indices: Sequence[int],
                 latent_hw: tuple[int, int], w_self: float, w_cross: float,
                 original: Any = None, cache: dict[tuple[Any, ...], torch.Tensor] | None = None
                 ) -> None:
        for name, value in (("w_self", w_self), ("w_cross", w_cross)):
            if not math.isfinite(float(value)):
                raise ConfigError(f"{name} must be a finite number; got {value}")
        self.mask = as_mask_tensor(mask)
        self.token_indices = tuple(int(j) for j in token_indices)
        self.latent_hw = (int(latent_hw[0]), int(latent_hw[1]))
        self.w_self = float(w_self)
        self.w_cross = float(w_cross)
        self.original = original if original is not None else AttnProcessor2_0()
        self.cache = cache if cache is not None else {}

    def bias(self, n_queries: int, n_keys: int, cross: bool, device: torch.device,
             dtype: torch.dtype) -> torch.Tensor:
        """The (n_queries, n_keys) bias ``w * A`` on ``device`` in ``dtype`` (cached)."""
        key = (n_queries, n_keys, cross, str(device), dtype)
        if key not in self.cache:
            weight = self.w_cross if cross else self.w_self
            bias = injection_bias(self.mask, self.latent_hw, n_queries, n_keys,
                                  self.token_indices if cross else None, weight)
            self.cache[key] = bias.to(device=device, dtype=dtype)
        return self.cache[key]

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        """``hidden_states``: (B, n, C) or (B, C, h, w); returns the same shape and dtype."""
        cross = encoder_hidden_states is not None
        if (self.w_cross if cross else self.w_self) == 0.0:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask,
                                 temb, *args, **kwargs)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, n_queries, _ = hidden_states.shape
        sequence_length = (encoder_hidden_states if cross else hidden_states).shape[1]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length,
                                                         batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1,
                                                 attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        bias = self.bias(n_queries, key.shape[2], cross, query.device, query.dtype)
        if attention_mask is None:
            attention_mask = bias
        elif attention_mask.dtype == torch.bool:
            attention_mask = torch.zeros(attention_mask.shape, dtype=query.dtype,
                                         device=query.device
                                         ).masked_fill(~attention_mask, float("-inf")) + bias
        else:
            attention_mask = attention_mask + bias
        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            scale=attn.scale)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1,
                                                              attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height,
                                                                    width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def injected_modules(unet: torch.nn.Module) -> list[tuple[str, Attention]]:
    """``(name, module)`` of every attention module of ``unet`` named attn1 or attn2."""
    return [(name, module) for name, module in unet.named_modules()
            if isinstance(module, Attention) and name.rsplit(".", 1)[-1] in INJECTED_LAYERS]


@contextmanager
def inject_mask(unet: torch.nn.Module, mask: np.ndarray | torch.Tensor,
                token_indices: Sequence[int], latent_hw: tuple[int, int], w_self: float,
                w_cross: float) -> Iterator[list[MaskInjection]]:
    """Install :class:`MaskInjection` on every attn1/attn2 of ``unet`` for the ``with`` body.

    ``mask``: (H, W) bool or float in [0, 1]; ``token_indices``: class-name positions in the
    prompt's token sequence; ``latent_hw``: (h, w) of the latents the UNet will be called
    on. Yields the installed processors; the original processors are put back on exit,
    also when the body raises. :class:`DataError` when ``unet`` has no attn1/attn2 layers.
    """
    modules = injected_modules(unet)
    if not modules:
        raise DataError(f"{type(unet).__name__} has no attention layers named "
                        f"{INJECTED_LAYERS}: mask injection needs a diffusers UNet with "
                        "transformer blocks")
    mask_tensor = as_mask_tensor(mask)
    cache: dict[tuple[Any, ...], torch.Tensor] = {}
    originals = [(module, module.get_processor()) for _, module in modules]
    installed = [MaskInjection(mask_tensor, token_indices, latent_hw, w_self, w_cross,
                               original=processor, cache=cache)
                 for _, processor in originals]
    try:
        for (module, _), processor in zip(originals, installed, strict=True):
            module.set_processor(processor)
        yield installed
    finally:
        for module, processor in originals:
            module.set_processor(processor)
