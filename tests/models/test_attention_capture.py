"""Cross-attention logit capture and up-block output hooks on real diffusers modules."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import Attention, SlicedAttnProcessor

from segloop.errors import ConfigError, DataError
from segloop.models.attention_capture import (
    AttentionStore,
    CrossAttentionCapture,
    capture_block_outputs,
    capture_cross_attention,
    cross_attention_logits,
    layer_grid,
)
from segloop.models.diffusion import build_tiny_pipeline

TINY_CROSS = {
    "down_blocks.1.attentions.0.transformer_blocks.0.attn2": "down",
    "mid_block.attentions.0.transformer_blocks.0.attn2": "mid",
    "up_blocks.0.attentions.0.transformer_blocks.0.attn2": "up",
    "up_blocks.0.attentions.1.transformer_blocks.0.attn2": "up",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> StableDiffusionPipeline:
    return build_tiny_pipeline(seed=0, tokenizer_dir=tmp_path_factory.mktemp("tok"))


def _identity_attention() -> Attention:
    """One head of width 2, to_q and to_k the identity: logits = x e^T / sqrt(2)."""
    attn = Attention(query_dim=2, cross_attention_dim=2, heads=1, dim_head=2)
    with torch.no_grad():
        attn.to_q.weight.copy_(torch.eye(2))
        attn.to_k.weight.copy_(torch.eye(2))
    return attn


def _install(attn: Attention, store: AttentionStore) -> object:
    original = attn.processor
    attn.set_processor(CrossAttentionCapture(original, "layer", "up", store))
    return original


def test_logits_by_hand_row_major_and_not_softmaxed() -> None:
    attn = _identity_attention()
    # a 2x3 grid, pixel n at row n // 3, column n % 3, with feature (row, column - 1)
    x = torch.tensor([[[n // 3, n % 3 - 1] for n in range(6)]], dtype=torch.float32)
    text = torch.tensor([[[5.0, 5.0], [1.0, 0.0], [7.0, 7.0], [0.0, 2.0]]])
    store = AttentionStore((1, 3), (2, 3))
    _install(attn, store)
    attn(x, encoder_hidden_states=text)
    (layer,) = store.layers
    assert (layer.name, layer.place, layer.size) == ("layer", "up", (2, 3))
    assert layer.logits.shape == (1, 2, 2, 3) and layer.logits.dtype == torch.float32
    s = 1 / math.sqrt(2)
    rows = torch.tensor([[0.0, 0, 0], [1, 1, 1]]) * s  # token 1 = (1, 0) reads the row
    cols = torch.tensor([[-2.0, 0, 2], [-2, 0, 2]]) * s  # token 3 = (0, 2) reads column - 1
    assert torch.allclose(layer.map, torch.stack([rows, cols]), atol=1e-6)
    assert layer.map.min() < 0  # pre-softmax: negative values are kept
    assert not torch.allclose(layer.map.sum(0), torch.ones(2, 3))


def test_logits_equal_a_hand_run_on_a_multi_head_layer() -> None:
    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=12, heads=4, dim_head=8)
    x, text = torch.randn(1, 20, 16), torch.randn(1, 7, 12)
    tokens = [6, 2, 3]
    got = cross_attention_logits(attn, x, text, tokens)  # (B, N, T)
    q = attn.to_q(x).view(1, 20, 4, 8).transpose(1, 2)
    k = attn.to_k(text).view(1, 7, 4, 8).transpose(1, 2)
    full = (q @ k.transpose(-1, -2)) * 8**-0.5  # (1, heads, 20, 7)
    want = full.mean(1)[:, :, tokens]
    assert attn.scale == pytest.approx(8**-0.5)
    assert got.shape == (1, 20, 3) and torch.allclose(got, want, atol=1e-5)
    # the softmaxed attention is something else: rows over all tokens sum to 1
    assert not torch.allclose(full.softmax(-1).mean(1)[:, :, tokens], want, atol=1e-3)


def test_layer_output_is_unchanged_and_batches_keep_their_dim() -> None:
    torch.manual_seed(1)
    attn = Attention(query_dim=16, cross_attention_dim=12, heads=4, dim_head=8)
    x, text = torch.randn(2, 12, 16), torch.randn(2, 7, 12)
    plain = attn(x, encoder_hidden_states=text)
    store = AttentionStore((1, 2), (3, 4))
    _install(attn, store)
    captured = attn(x, encoder_hidden_states=text)
    assert torch.equal(plain, captured)
    (layer,) = store.layers
    assert layer.logits.shape == (2, 2, 3, 4)
    want = cross_attention_logits(attn, x[1:], text[1:], [1, 2])[0]  # sample 1 alone
    assert torch.allclose(layer.logits[1], want.T.reshape(2, 3, 4), atol=1e-6)
    with pytest.raises(DataError, match="batch size 2"):
        _ = layer.map


def test_any_original_processor_keeps_its_output() -> None:
    torch.manual_seed(2)
    attn = Attention(query_dim=16, cross_attention_dim=12, heads=4, dim_head=8)
    attn.set_processor(SlicedAttnProcessor(slice_size=1))  # takes no temb argument
    x, text = torch.randn(1, 6, 16), torch.randn(1, 5, 12)
    plain = attn(x, encoder_hidden_states=text)
    store = AttentionStore((2,), (2, 3))
    _install(attn, store)
    assert torch.equal(attn(x, encoder_hidden_states=text), plain)
    want = cross_attention_logits(attn, x, text, [2])
    assert torch.allclose(store.layers[0].map, want[0].T.reshape(1, 2, 3), atol=1e-6)


def test_self_attention_calls_are_not_recorded_and_bad_tokens_fail() -> None:
    attn = _identity_attention()
    store = AttentionStore((1,), (1, 2))
    _install(attn, store)
    attn(torch.ones(1, 2, 2))  # no encoder_hidden_states: self-attention
    assert store.layers == []
    store.token_indices = (4,)
    with pytest.raises(DataError, match="token index 4 is past the end of the 3-token"):
        attn(torch.ones(1, 2, 2), encoder_hidden_states=torch.ones(1, 3, 2))


def test_layer_grid() -> None:
    assert layer_grid(256, (16, 16)) == (16, 16)
    assert layer_grid(64, (16, 16)) == (8, 8)
    assert layer_grid(12, (5, 7)) == (3, 4)  # ceil(5/2) x ceil(7/2)
    assert layer_grid(4, (5, 7)) == (2, 2)
    with pytest.raises(DataError, match="no stride-2 downsampling of the 16x16"):
        layer_grid(60, (16, 16))


def _unet_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(1, 4, 16, 16, generator=gen), torch.randn(1, 77, 32, generator=gen)


def test_unet_output_unchanged_under_both_captures(tiny: StableDiffusionPipeline) -> None:
    unet = tiny.unet
    x, text = _unet_inputs()
    with torch.inference_mode():
        plain = unet(x, 0, encoder_hidden_states=text).sample
        with (capture_cross_attention(unet, [1, 2, 5], (16, 16)) as store,
              capture_block_outputs(unet, [0, 1]) as blocks):
            captured = unet(x, 0, encoder_hidden_states=text).sample
    assert torch.equal(plain, captured)
    assert {layer.name: layer.place for layer in store.layers} == TINY_CROSS
    assert all(layer.logits.shape == (1, 3, 8, 8) for layer in store.layers)
    assert store.mean((16, 16)).shape == (1, 3, 16, 16)
    assert blocks.latest(0).shape == (1, 64, 16, 16)
    assert blocks.latest(1).shape == (1, 32, 16, 16)
    # the last up block's output, through the UNet's output head, is the UNet's output
    with torch.inference_mode():
        head = unet.conv_out(unet.conv_act(unet.conv_norm_out(blocks.latest(1))))
    assert torch.allclose(head, plain, atol=1e-6)


def test_captured_map_matches_the_layer_inputs(tiny: StableDiffusionPipeline) -> None:
    unet = tiny.unet
    name = "mid_block.attentions.0.transformer_blocks.0.attn2"
    module = unet.get_submodule(name)
    seen: dict[str, torch.Tensor] = {}

    def grab(mod: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        seen["x"], seen["text"] = args[0], kwargs["encoder_hidden_states"]

    x, text = _unet_inputs()
    handle = module.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.inference_mode(), capture_cross_attention(unet, [3, 0], (16, 16),
                                                             places=("mid",)) as store:
            unet(x, 0, encoder_hidden_states=text)
            want = cross_attention_logits(module, seen["x"], seen["text"], [3, 0])
    finally:
        handle.remove()
    (layer,) = store.layers
    assert layer.name == name and layer.size == (8, 8)
    assert torch.allclose(layer.map, want[0].T.reshape(2, 8, 8), atol=1e-6)


def test_max_side_and_places_select_layers(tiny: StableDiffusionPipeline) -> None:
    x, text = _unet_inputs()
    with torch.inference_mode():
        with capture_cross_attention(tiny.unet, [1], (16, 16), max_side=7) as small:
            tiny.unet(x, 0, encoder_hidden_states=text)
        with capture_cross_attention(tiny.unet, [1], (16, 16), max_side=8) as eight:
            tiny.unet(x, 0, encoder_hidden_states=text)
        with capture_cross_attention(tiny.unet, [1], (16, 16), places=("up",)) as up:
            tiny.unet(x, 0, encoder_hidden_states=text)
    assert small.layers == [] and len(eight.layers) == 4
    assert [layer.name for layer in up.layers] == [n for n, p in TINY_CROSS.items() if p == "up"]
    with pytest.raises(DataError, match="no cross-attention map was recorded"):
        small.mean((8, 8))


def test_processors_and_hooks_restored_also_after_errors(tiny: StableDiffusionPipeline) -> None:
    unet = tiny.unet
    before = dict(unet.attn_processors)
    with capture_cross_attention(unet, [1], (16, 16)):
        during = unet.attn_processors
        assert sum(isinstance(p, CrossAttentionCapture) for p in during.values()) == 4
        assert all(during[k] is before[k] for k in before if "attn1" in k)
    assert all(unet.attn_processors[k] is v for k, v in before.items())
    with pytest.raises(RuntimeError, match="boom"):
        with (capture_cross_attention(unet, [1], (16, 16)),
              capture_block_outputs(unet, [0, 1])):
            raise RuntimeError("boom")
    assert all(unet.attn_processors[k] is v for k, v in before.items())
    assert all(not block._forward_hooks for block in unet.up_blocks)


def test_bad_arguments(tiny: StableDiffusionPipeline) -> None:
    with pytest.raises(ConfigError, match="non-empty subset"):
        with capture_cross_attention(tiny.unet, [1], (16, 16), places=("left",)):
            pass
    with pytest.raises(ConfigError, match="latent_hw must be two positive ints"):
        with capture_cross_attention(tiny.unet, [1], (16,)):
            pass
    with pytest.raises(ConfigError, match=r"in 0\.\.1 \(this UNet has 2 up blocks\)"):
        with capture_block_outputs(tiny.unet, [2]):
            pass
    with pytest.raises(DataError, match="up block 0 produced no output"):
        with capture_block_outputs(tiny.unet, [0]) as blocks:
            blocks.latest(0)

