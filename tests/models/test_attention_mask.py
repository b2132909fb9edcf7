"""Mask injection into diffusers attention (G4Seg eq. 3-5): bias, layer math, UNet patching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from segloop.errors import DataError
from segloop.models.attention_mask import (
    MaskInjection,
    inject_mask,
    injection_bias,
    mask_on_grid,
)
from segloop.models.diffusion import build_tiny_pipeline

HEADS, DIM_HEAD = 2, 4
INNER = HEADS * DIM_HEAD
LATENT_HW = (4, 4)
#: 8x8 pixel mask: the left half. On the 4x4 layer grid: columns 0 and 1.
MASK = np.zeros((8, 8), bool)
MASK[:, :4] = True
INSIDE = torch.tensor([[c < 2 for c in range(4)] for _ in range(4)]).reshape(-1)
CLASS_TOKENS = (2, 3)
N_KEYS = 5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> StableDiffusionPipeline:
    return build_tiny_pipeline(seed=0, tokenizer_dir=tmp_path_factory.mktemp("tok"))


# --- grid and bias --------------------------------------------------------------------------


def test_mask_on_grid_is_area_majority() -> None:
    mask = torch.tensor([[1, 1, 1, 0],
                         [1, 0, 0, 1],
                         [0, 0, 1, 1],
                         [0, 1, 1, 1]], dtype=torch.float32)
    # cells' covered fractions: 3/4, 2/4 | 1/4, 4/4 -> strict majority
    assert mask_on_grid(mask, (2, 2)).tolist() == [True, False, False, True]


def test_injection_bias_self_and_cross() -> None:
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    self_bias = injection_bias(mask, (2, 2), 4, 4, None, 2.0)
    m = torch.tensor([1.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(self_bias, 2.0 * torch.outer(m, m))
    cross = injection_bias(mask, (2, 2), 4, 5, [1, 2], 0.5)
    expected = torch.zeros(4, 5)
    expected[0, 1:3] = expected[3, 1:3] = 0.5
    torch.testing.assert_close(cross, expected)
    with pytest.raises(DataError, match=r"class token indices \[5\]"):
        injection_bias(mask, (2, 2), 4, 5, [1, 5], 1.0)


# --- one attention layer: the processor's output reveals its attention mass --------------


def _probe_layer(cross: bool) -> Attention:
    """A seeded Attention whose output channel h*DIM_HEAD of head h equals that head's
    attention mass on the keys whose last input feature is 1 (to_v copies that feature,
    to_out is the identity)."""
    torch.manual_seed(0)
    attn = Attention(query_dim=INNER, cross_attention_dim=6 if cross else None, heads=HEADS,
                     dim_head=DIM_HEAD).eval()
    key_dim = 6 if cross else INNER
    with torch.no_grad():
        attn.to_v.weight.zero_()
        for h in range(HEADS):
            attn.to_v.weight[h * DIM_HEAD, key_dim - 1] = 1.0
        attn.to_out[0].weight.copy_(torch.eye(INNER))
        attn.to_out[0].bias.zero_()
    return attn


def _inputs(cross: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(hidden (1, 16, 8), encoder states (1, 5, 6) or None, matching-key indicator)."""
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(1, 16, INNER, generator=g)
    if cross:
        text = torch.randn(1, N_KEYS, 6, generator=g)
        marked = torch.zeros(N_KEYS)
        marked[list(CLASS_TOKENS)] = 1.0
        text[0, :, -1] = marked
        return hidden, text, marked
    hidden[0, :, -1] = INSIDE.float()
    return hidden, None, INSIDE.float()


def _hand_mass(attn: Attention, hidden: torch.Tensor, text: torch.Tensor | None,
               marked: torch.Tensor, w: float) -> torch.Tensor:
    """(16, HEADS) attention mass on marked keys, computed from to_q / to_k by hand."""
    keys_in = hidden if text is None else text
    q = attn.to_q(hidden).view(16, HEADS, DIM_HEAD).transpose(0, 1)
    k = attn.to_k(keys_in).view(-1, HEADS, DIM_HEAD).transpose(0, 1)
    a = INSIDE.float()[:, None] * marked[None, :]
    logits = q @ k.transpose(1, 2) / math.sqrt(DIM_HEAD) + w * a
    return (logits.softmax(-1) * marked).sum(-1).T


def _mass(attn: Attention, hidden: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
    return attn(hidden, encoder_hidden_states=text)[0][:, ::DIM_HEAD]


@pytest.mark.parametrize("cross", [True, False], ids=["cross", "self"])
def test_injection_raises_in_mask_attention_mass(cross: bool) -> None:
    attn = _probe_layer(cross)
    hidden, text, marked = _inputs(cross)
    w = 2.0
    with torch.no_grad():
        attn.set_processor(AttnProcessor2_0())
        base = _mass(attn, hidden, text)
        attn.set_processor(MaskInjection(MASK, CLASS_TOKENS, LATENT_HW, w_self=w, w_cross=w))
        injected = _mass(attn, hidden, text)
        torch.testing.assert_close(base, _hand_mass(attn, hidden, text, marked, 0.0))
        torch.testing.assert_close(injected, _hand_mass(attn, hidden, text, marked, w))
    # in-mask pixels give strictly more mass to the marked keys; other pixels are unchanged
    assert bool((injected[INSIDE] > base[INSIDE] + 1e-3).all())
    torch.testing.assert_close(injected[~INSIDE], base[~INSIDE])
    # the odds of the marked keys grow by exactly exp(w): p' / (1 - p') = e^w p / (1 - p)
    odds = base[INSIDE] / (1 - base[INSIDE])
    torch.testing.assert_close(injected[INSIDE] / (1 - injected[INSIDE]), math.exp(w) * odds,
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cross", [True, False], ids=["cross", "self"])
def test_zero_weight_output_is_unchanged(cross: bool) -> None:
    torch.manual_seed(3)
    attn = Attention(query_dim=INNER, cross_attention_dim=6 if cross else None, heads=HEADS,
                     dim_head=DIM_HEAD).eval()
    hidden, text, _ = _inputs(cross)
    with torch.no_grad():
        base = attn(hidden, encoder_hidden_states=text)
        attn.set_processor(MaskInjection(MASK, CLASS_TOKENS, LATENT_HW, 0.0, 0.0))
        assert torch.equal(attn(hidden, encoder_hidden_states=text), base)
        # the injecting code path itself, with an empty mask (A = 0), matches too
        empty = np.zeros((8, 8), bool)
        attn.set_processor(MaskInjection(empty, CLASS_TOKENS, LATENT_HW, 3.0, 3.0))
        torch.testing.assert_close(attn(hidden, encoder_hidden_states=text), base,
                                   rtol=1e-6, atol=1e-6)


def test_cross_injection_adds_to_an_existing_attention_mask() -> None:
    attn = _probe_layer(cross=True)
    hidden, text, marked = _inputs(cross=True)
    blocked = torch.zeros(1, 1, N_KEYS)
    blocked[..., 3] = -1e4  # token 3 (a class token) may not be attended to
    with torch.no_grad():
        attn.set_processor(MaskInjection(MASK, CLASS_TOKENS, LATENT_HW, 1.0, 1.5))
        mass = attn(hidden, encoder_hidden_states=text, attention_mask=blocked)[0][:, ::4]
        torch.testing.assert_close(mass, _masked_hand(attn, hidden, text, marked, 1.5))
    # token 3 gets ~nothing, so the mass on the class tokens is that of token 2 alone
    assert float(mass.max()) < 1.0


def _masked_hand(attn: Attention, hidden: torch.Tensor, text: torch.Tensor,
                 marked: torch.Tensor, w: float) -> torch.Tensor:
    """Like :func:`_hand_mass` (cross) with -1e4 added to token 3's logits."""
    q = attn.to_q(hidden).view(16, HEADS, DIM_HEAD).transpose(0, 1)
    k = attn.to_k(text).view(-1, HEADS, DIM_HEAD).transpose(0, 1)
    logits = q @ k.transpose(1, 2) / math.sqrt(DIM_HEAD)
    logits = logits + w * INSIDE.float()[:, None] * marked[None, :]
    logits[..., 3] -= 1e4
    return (logits.softmax(-1) * marked).sum(-1).T


# --- the whole tiny UNet -----------------------------------------------------------------


def _unet_inputs(pipe: StableDiffusionPipeline) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(1, 4, 16, 16, generator=g)
    text = torch.randn(1, 77, 32, generator=g)
    return latents, text


def test_inject_mask_installs_and_restores(tiny: StableDiffusionPipeline) -> None:
    unet = tiny.unet
    before = dict(unet.attn_processors)
    with inject_mask(unet, MASK, CLASS_TOKENS, (16, 16), 1.0, 1.0) as installed:
        during = unet.attn_processors
        assert len(installed) == len(before) == len(during) > 0
        assert all(isinstance(p, MaskInjection) for p in during.values())
        assert [p.original for p in installed] == [before[k] for k in during]
    after = unet.attn_processors
    assert all(after[k] is before[k] for k in before)

    with pytest.raises(RuntimeError, match="boom"), \
            inject_mask(unet, MASK, CLASS_TOKENS, (16, 16), 1.0, 1.0):
        raise RuntimeError("boom")
    after = unet.attn_processors
    assert all(after[k] is before[k] for k in before)


def test_tiny_unet_unchanged_with_zero_weights(tiny: StableDiffusionPipeline) -> None:
    unet = tiny.unet
    latents, text = _unet_inputs(tiny)
    t = torch.tensor([400])
    with torch.no_grad():
        base = unet(latents, t, encoder_hidden_states=text).sample
        with inject_mask(unet, MASK, CLASS_TOKENS, (16, 16), 0.0, 0.0):
            zero = unet(latents, t, encoder_hidden_states=text).sample
        with inject_mask(unet, np.zeros((8, 8)), CLASS_TOKENS, (16, 16), 2.0, 2.0):
            empty = unet(latents, t, encoder_hidden_states=text).sample
        with inject_mask(unet, MASK, CLASS_TOKENS, (16, 16), 2.0, 2.0):
            injected = unet(latents, t, encoder_hidden_states=text).sample
        again = unet(latents, t, encoder_hidden_states=text).sample
    assert torch.equal(zero, base)
    torch.testing.assert_close(empty, base, rtol=1e-5, atol=1e-5)
    assert (injected - base).abs().max() > 1e-3  # the mask does reach the UNet's output
    assert torch.equal(again, base)  # and nothing is left behind


def test_bad_mask_is_rejected(tiny: StableDiffusionPipeline) -> None:
    with pytest.raises(DataError, match=r"values span \[2.0, 2.0\]"), \
            inject_mask(tiny.unet, np.full((4, 4), 2.0), CLASS_TOKENS, (16, 16), 1.0, 1.0):
        pass
    with pytest.raises(DataError, match=r"shape \(4,\)"):
        MaskInjection(np.ones(4), CLASS_TOKENS, (16, 16), 1.0, 1.0)
