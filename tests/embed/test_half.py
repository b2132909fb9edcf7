"""SAM in half precision (bfloat16 here, on the CPU; float16 on a GPU lease failed the same
way): the prompt encoder stays float32, so point prompts embed instead of failing on a
float32 x half matrix product, and the tokens stay close to float32's."""

from __future__ import annotations

import numpy as np
import torch

from segloop.embed.extract import MaskEmbedder
from segloop.models import LoadedSam
from segloop.models.sam import build_sam, in_dtype


def test_bfloat16_sam_embeds_points_close_to_float32(images: list[np.ndarray]) -> None:
    cpu = torch.device("cpu")
    full = LoadedSam(in_dtype(build_sam("tiny", seed=1), torch.float32), "tiny", None, cpu,
                     torch.float32)
    half = LoadedSam(in_dtype(build_sam("tiny", seed=1), torch.bfloat16), "tiny", None, cpu,
                     torch.bfloat16)
    assert half.model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.dtype == (
        torch.float32)
    assert half.model.mask_decoder.iou_token.weight.dtype == torch.bfloat16
    a = MaskEmbedder(full, points_per_side=4, points_per_batch=8)([images[0]])[0]
    b = MaskEmbedder(half, points_per_side=4, points_per_batch=8)([images[0]])[0]
    assert b.tokens.shape == a.tokens.shape and np.isfinite(b.tokens).all()
    rel = np.linalg.norm(b.tokens - a.tokens) / np.linalg.norm(a.tokens)
    assert rel < 0.05, rel
