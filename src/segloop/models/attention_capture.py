"""Read a diffusers UNet's cross-attention logits and decoder block outputs, without copying it.

Two context managers, both leaving the UNet exactly as they found it:

* :func:`capture_cross_attention` swaps the processor of each selected cross-attention layer
  (the ``attn2`` of every transformer block, i.e. the entries of ``unet.attn_processors``
  whose name ends in ``"attn2.processor"``) for a :class:`CrossAttentionCapture`. That
  processor *delegates the layer output to the processor it replaced* (so the UNet output is
  unchanged, bit for bit), and in addition records the pre-softmax logits
  ``Q K^T * attn.scale`` of a few text-token columns, averaged over heads, for MaskDiffusion
  (Kawano and Aoki 2024, eq. 5.4; docs/algorithms.md §4b). The original processors are put
  back on exit, also after an error.
* :func:`capture_block_outputs` records the outputs of chosen ``unet.up_blocks`` through
  forward hooks, removed on exit.

Cost: the capture recomputes the query projection ``to_q`` of each captured layer (the
delegated processor computes it again for the output) plus ``to_k`` of the text sequence
and a (tokens x pixels) product per head; next to a UNet call this is small. Recomputing
instead of intercepting the original's ``to_q`` keeps the capture correct for any original
processor (SDPA, sliced, xformers, fused projections).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from segloop.errors import ConfigError, DataError

#: Where a cross-attention layer sits in the UNet: its name's first part -> place.
PLACES: dict[str, str] = {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}
CROSS_ATTENTION_SUFFIX = "attn2.processor"


@dataclass(frozen=True)
class LayerMap:
    """Cross-attention logits of one call of one layer.

    ``name``: the ``Attention`` module's name in the UNet (e.g.
    ``"up_blocks.1.attentions.0.transformer_blocks.0.attn2"``); ``place``: "down", "mid" or
    "up"; ``size``: the layer's spatial grid (h, w); ``logits``: (B, T, h, w) float32 on the
    UNet's device, ``Q K^T * attn.scale`` averaged over heads for the T requested token
    columns (in the order given), *not* softmaxed.
    """

    name: str
    place: str
    size: tuple[int, int]
    logits: torch.Tensor

    @property
    def map(self) -> torch.Tensor:
        """The (T, h, w) float32 logits of a batch of one; a batch of more -> DataError."""
        if self.logits.shape[0] != 1:
            raise DataError(f"layer {self.name} was called with batch size "
                            f"{self.logits.shape[0]}; read .logits[b] for sample b instead")
        return self.logits[0]


@dataclass
class AttentionStore:
    """What :func:`capture_cross_attention` yields: one :class:`LayerMap` per call of a
    captured layer, in call order (a UNet called n times adds n maps per layer)."""

    token_indices: tuple[int, ...]
    latent_hw: tuple[int, int]
    layers: list[LayerMap] = field(default_factory=list)

    def clear(self) -> None:
        """Forget the recorded maps (e.g. between UNet calls)."""
        self.layers.clear()

    def mean(self, size: tuple[int, int]) -> torch.Tensor:
        """The recorded logits, each resized bilinearly (align_corners=False) to ``size``
        (h, w), averaged over layers (and calls): (B, T, h, w) float32. No layer -> DataError."""
        if not self.layers:
            raise DataError("no cross-attention map was recorded: call the UNet inside "
                            "capture_cross_attention, and check its places/max_side select "
                            "at least one layer")
        total = None
        for layer in self.layers:
            resized = resize_maps(layer.logits, size)
            total = resized if total is None else total + resized
        assert total is not None
        return total / len(self.layers)


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, h, w) -> (B, T, *size) float32, bilinear (align_corners=False); returned as is
    (cast to float32) when the size already matches."""
    maps = maps.float()
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return nn.functional.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def layer_grid(sequence_length: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) grid of a UNet layer whose flattened sequence has ``sequence_length``
    pixels, for a latent of ``latent_hw``: the ``k``-times stride-2 downsampling of it
    (diffusers' 3x3/stride-2/pad-1 convolutions give ``ceil(side / 2)``), for the ``k`` whose
    h * w equals ``sequence_length``. No such ``k`` -> DataError."""
    h, w = int(latent_hw[0]), int(latent_hw[1])
    if h < 1 or w < 1:
        raise DataError(f"latent_hw must be two positive ints; got {latent_hw!r}")
    while True:
        if h * w == sequence_length:
            return h, w
        if h * w < sequence_length or (h == 1 and w == 1):
            raise DataError(f"a cross-attention layer has {sequence_length} pixels, which is no "
                            f"stride-2 downsampling of the {latent_hw[0]}x{latent_hw[1]} latent; "
                            "pass the latent's (height, width) as latent_hw")
        h, w = -(-h // 2), -(-w // 2)


def cross_attention_logits(attn: Any, hidden_states: torch.Tensor,
                           encoder_hidden_states: torch.Tensor, token_indices: Sequence[int],
                           temb: torch.Tensor | None = None) -> torch.Tensor:
    """Pre-softmax cross-attention logits of ``attn`` (a diffusers ``Attention``) for the
    columns ``token_indices`` of the text sequence, averaged over heads.

    ``hidden_states``: (B, N, C) or (B, C, h, w) image-side input; ``encoder_hidden_states``:
    (B, L, C_text). Returns (B, N, T) float32: ``mean_heads(Q_h K_h[tokens]^T) * attn.scale``,
    with Q and K built exactly as ``AttnProcessor2_0`` builds them (spatial norm, group norm,
    ``to_q``; cross norm, ``to_k``; per-head ``norm_q``/``norm_k``). An attention mask is
    not applied (the class-token columns of SD prompts are never masked).
    """
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    if hidden_states.ndim == 4:
        b, c, h, w = hidden_states.shape
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    index = torch.as_tensor(list(token_indices), dtype=torch.long,
                            device=encoder_hidden_states.device)
    key = attn.to_k(encoder_hidden_states.index_select(1, index))
    batch = query.shape[0]
    head_dim = key.shape[-1] // attn.heads
    query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)  # (B, heads, N, d)
    key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)  # (B, heads, T, d)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    logits = torch.matmul(query.float(), key.float().transpose(-1, -2)) * attn.scale
    return logits.mean(dim=1)


class CrossAttentionCapture:
    """An attention processor that returns exactly what ``original`` returns and, for a
    cross-attention call (``encoder_hidden_states`` given), appends a :class:`LayerMap` of
    the logits of ``store.token_indices`` to ``store`` when the layer's grid has
    ``max(h, w) <= max_side`` (all layers if ``max_side`` is None).

    Keyword arguments reach it the way diffusers' ``Attention.forward`` passes them: only
    those named in this ``__call__``'s signature (as for ``AttnProcessor2_0``).
    """

    def __init__(self, original: Any, name: str, place: str, store: AttentionStore,
                 max_side: int | None = None) -> None:
        self.original = original
        self.name = name
        self.place = place
        self.store = store
        self.max_side = max_side

    def __call__(self, attn: Any, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        if encoder_hidden_states is not None and self.store.token_indices:
            length = int(encoder_hidden_states.shape[1])
            if max(self.store.token_indices) >= length:
                raise DataError(f"token index {max(self.store.token_indices)} is past the end "
                                f"of the {length}-token text sequence of layer {self.name}; "
                                f"use indices in 0..{length - 1}")
            if hidden_states.ndim == 4:
                size = (int(hidden_states.shape[2]), int(hidden_states.shape[3]))
            else:
                size = layer_grid(int(hidden_states.shape[1]), self.store.latent_hw)
            if self.max_side is None or max(size) <= self.max_side:
                with torch.no_grad():
                    logits = cross_attention_logits(attn, hidden_states, encoder_hidden_states,
                                                    self.store.token_indices, temb)
                maps = logits.transpose(1, 2).reshape(logits.shape[0], -1, *size)
                self.store.layers.append(LayerMap(self.name, self.place, size, maps))
        if temb is not None:  # not every processor takes temb (SlicedAttnProcessor does not)
            kwargs["temb"] = temb
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask,
                             *args, **kwargs)


def _cross_attention_layers(unet: nn.Module, places: Sequence[str]) -> dict[str, str]:
    """{Attention module name: place} of the cross-attention layers in ``places``."""
    unknown = sorted(set(places) - set(PLACES.values()))
    if unknown or not places:
        raise ConfigError(f"attention places must be a non-empty subset of "
                          f"{sorted(PLACES.values())}; got {list(places)!r}")
    layers: dict[str, str] = {}
    for key in getattr(unet, "attn_processors", {}):
        if not key.endswith(CROSS_ATTENTION_SUFFIX):
            continue
        place = PLACES.get(key.split(".", 1)[0])
        if place in places:
            layers[key.removesuffix(".processor")] = place
    return layers


def _positive_pair(value: Sequence[int], what: str) -> tuple[int, int]:
    pair = tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ConfigError(f"{what} must be two positive ints (height, width); got {value!r}")
    return pair  # type: ignore[return-value]


@contextmanager
def capture_cross_attention(unet: nn.Module, token_indices: Sequence[int],
                            latent_hw: Sequence[int], *,
                            places: Sequence[str] = ("down", "mid", "up"),
                            max_side: int | None = None) -> Iterator[AttentionStore]:
    """Record pre-softmax cross-attention logits of ``token_indices`` while inside.

    ``unet``: a diffusers ``UNet2DConditionModel``; ``token_indices``: positions in the
    text sequence (BOS at 0) to record, in that order (T of them, each in 0..L-1);
    ``latent_hw``: the (height, width) of the latent the UNet will be called on (to unflatten
    each layer's sequence); ``places``: which of "down", "mid", "up" to capture;
    ``max_side``: keep only calls of layers whose grid has ``max(h, w) <= max_side`` (None:
    all; MaskDiffusion's authors keep sides up to half the latent side). Layers above the
    limit still run, uncaptured. Yields an :class:`AttentionStore`; restores the original
    processors on exit. No cross-attention layer in ``places`` -> ConfigError.
    """
    latent = _positive_pair(latent_hw, "latent_hw")
    indices = tuple(int(i) for i in token_indices)
    if any(i < 0 for i in indices):
        raise ConfigError(f"token indices must be >= 0 (BOS is 0); got {list(indices)}")
    if max_side is not None and max_side < 1:
        raise ConfigError(f"max_side must be >= 1 or None; got {max_side}")
    layers = _cross_attention_layers(unet, places)
    if not layers:
        raise ConfigError(f"the UNet has no cross-attention layer (attn2) in places "
                          f"{list(places)}; add other places")
    store = AttentionStore(indices, latent)
    modules = {name: unet.get_submodule(name) for name in layers}
    originals = {name: module.processor for name, module in modules.items()}
    try:
        for name, module in modules.items():
            module.set_processor(CrossAttentionCapture(originals[name], name, layers[name],
                                                       store, max_side))
        yield store
    finally:
        for name, module in modules.items():
            module.set_processor(originals[name])


@dataclass
class BlockOutputs:
    """What :func:`capture_block_outputs` yields: ``outputs[i]`` lists the outputs of
    ``unet.up_blocks[i]``, one (B, C_i, h_i, w_i) tensor per call, in call order."""

    outputs: dict[int, list[torch.Tensor]]

    def latest(self, index: int) -> torch.Tensor:
        """The last recorded output of up block ``index`` (B, C_i, h_i, w_i); none -> DataError."""
        if not self.outputs.get(index):
            raise DataError(f"up block {index} produced no output: call the UNet inside "
                            "capture_block_outputs with that index")
        return self.outputs[index][-1]


@contextmanager
def capture_block_outputs(unet: nn.Module, up_block_indices: Sequence[int]
                          ) -> Iterator[BlockOutputs]:
    """Record the outputs of ``unet.up_blocks[i]`` for each ``i`` while inside.

    The tensors are the blocks' own outputs (detached, on the UNet's device and dtype). On
    SD 1.x at a 64x64 latent, up block 0 gives (B, 1280, 16, 16), 1 gives (B, 1280, 32, 32),
    2 gives (B, 640, 64, 64), 3 gives (B, 320, 64, 64). Index out of range -> ConfigError.
    Hooks are removed on exit, also after an error.
    """
    blocks = getattr(unet, "up_blocks", None)
    if blocks is None:
        raise ConfigError(f"{type(unet).__name__} has no up_blocks; pass a diffusers "
                          "UNet2DConditionModel")
    indices = [int(i) for i in up_block_indices]
    bad = [i for i in indices if not 0 <= i < len(blocks)]
    if bad or not indices:
        raise ConfigError(f"up block indices must be a non-empty list in 0..{len(blocks) - 1} "
                          f"(this UNet has {len(blocks)} up blocks); got {indices}")
    record = BlockOutputs({i: [] for i in indices})
    handles = []

    def hook_for(index: int) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = output[0] if isinstance(output, tuple) else output
            record.outputs[index].append(tensor.detach())
        return hook

    try:
        for i in dict.fromkeys(indices):
            handles.append(blocks[i].register_forward_hook(hook_for(i)))
        yield record
    finally:
        for handle in handles:
            handle.remove()
