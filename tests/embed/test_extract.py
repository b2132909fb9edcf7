"""Grid-mode extraction equals segment-anything's own predictor, point by point."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.utils.amg import build_point_grid

from segloop.embed.extract import MaskEmbedder, point_grid
from segloop.errors import DataError
from segloop.models import LoadedSam


def _predictor_batch(pred: SamPredictor, points: np.ndarray, hw: tuple[int, int]):  # type: ignore[no-untyped-def]
    coords = pred.transform.apply_coords(points, hw)
    coords_t = torch.as_tensor(coords, dtype=torch.float32)[:, None, :]
    labels = torch.ones(coords_t.shape[:2], dtype=torch.int)
    masks, iou, low_res = pred.predict_torch(coords_t, labels, multimask_output=True)
    return masks.numpy(), iou.numpy(), low_res


def _assert_masks_agree(got: np.ndarray, want: np.ndarray, max_fraction: float = 1e-3) -> None:
    """Boolean masks thresholded from logits that agree to float round-off: at most a few
    pixels whose logit sits on the threshold may flip."""
    assert got.shape == want.shape and got.dtype == want.dtype == bool
    assert (got != want).mean() <= max_fraction


@pytest.mark.parametrize("points_per_batch", [7, 100])
def test_masks_and_iou_equal_sam_predictor(
    tiny_sam: LoadedSam, images: list[np.ndarray], points_per_batch: int
) -> None:
    """The embedder calls SAM's modules in SamPredictor's order with the same batches of
    points. It is still another code path (its own tensors, slices and layouts), and which
    CPU kernel runs depends on the machine and thread count, so scores are compared to
    float round-off, masks to a few threshold pixels, and the best-of-three choice wherever
    the top two scores are not tied to round-off."""
    embedder = MaskEmbedder(tiny_sam, points_per_side=10, points_per_batch=points_per_batch,
                            all_masks=True)
    results = [embedder([image])[0] for image in images]  # one encoder call per image
    pred = SamPredictor(tiny_sam.model)
    for image, res in zip(images, results, strict=True):
        hw = image.shape[:2]
        pred.set_image(image)
        for i in range(0, 100, points_per_batch):
            sl = slice(i, i + points_per_batch)
            masks, iou, _ = _predictor_batch(pred, res.points[sl], hw)
            np.testing.assert_allclose(res.all_iou[sl], iou, rtol=1e-5, atol=1e-6)
            _assert_masks_agree(res.all_masks[sl], masks)
            best = iou.argmax(1)
            rows = np.arange(len(best))
            top2 = np.sort(iou, axis=1)[:, -2:]
            clear = top2[:, 1] - top2[:, 0] > 1e-5  # not a tie to round-off
            assert clear.mean() > 0.9
            np.testing.assert_array_equal(res.best[sl][clear], best[clear])
            np.testing.assert_allclose(res.iou[sl], iou[rows, res.best[sl]], rtol=1e-5,
                                       atol=1e-6)
            _assert_masks_agree(res.masks[sl][clear], masks[rows, best][clear])
        assert res.masks.shape == (100,) + hw and res.masks.dtype == bool


def test_single_point_predict_agrees(tiny_sam: LoadedSam, images: list[np.ndarray]) -> None:
    """The public one-point API gives the same masks (scores up to batching round-off)."""
    image = images[0]
    res = MaskEmbedder(tiny_sam)([image])[0]
    pred = SamPredictor(tiny_sam.model)
    pred.set_image(image)
    for i in (0, 37, 99):
        masks, iou, _ = pred.predict(point_coords=res.points[i : i + 1].astype(np.float64),
                                     point_labels=np.array([1]), multimask_output=True)
        np.testing.assert_allclose(iou[res.best[i]], res.iou[i], rtol=1e-5, atol=1e-6)
        assert (masks[res.best[i]] != res.masks[i]).mean() < 1e-3


def test_tokens_equal_mask_token_outputs_computed_independently(
    tiny_sam: LoadedSam, images: list[np.ndarray]
) -> None:
    """Re-run the decoder transformer by hand (MaskDecoder.predict_masks' inputs) per batch.

    Another code path (hand-built token and position tensors): equal to float round-off."""
    sam = tiny_sam.model
    image = images[1]
    embedder = MaskEmbedder(tiny_sam, points_per_batch=25)
    res = embedder([image])[0]
    pred = SamPredictor(sam)
    pred.set_image(image)
    dec = sam.mask_decoder
    with torch.inference_mode():
        for i in range(0, 100, 25):
            coords = pred.transform.apply_coords(res.points[i : i + 25], image.shape[:2])
            coords_t = torch.as_tensor(coords, dtype=torch.float32)[:, None, :]
            sparse, dense = sam.prompt_encoder(
                points=(coords_t, torch.ones(coords_t.shape[:2], dtype=torch.int)),
                boxes=None, masks=None)
            out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
            tokens = torch.cat((out_tokens.unsqueeze(0).expand(len(sparse), -1, -1), sparse), 1)
            src = torch.repeat_interleave(pred.features, len(tokens), dim=0) + dense
            pos = torch.repeat_interleave(sam.prompt_encoder.get_dense_pe(), len(tokens), 0)
            hs, _ = dec.transformer(src, pos, tokens)
            expected = hs[:, 1:5].reshape(len(tokens), 1024).numpy()
            np.testing.assert_allclose(res.tokens[i : i + 25], expected, rtol=1e-5, atol=1e-5)
    assert res.tokens.shape == (100, 1024) and res.tokens.dtype == np.float32


def test_hook_is_removed_after_each_call(tiny_sam: LoadedSam, images: list[np.ndarray]) -> None:
    transformer = tiny_sam.model.mask_decoder.transformer
    before = dict(transformer._forward_hooks)
    MaskEmbedder(tiny_sam)(images[:1])
    assert dict(transformer._forward_hooks) == before


def test_points_boxes_areas_and_stability(tiny_sam: LoadedSam, images: list[np.ndarray]) -> None:
    image = images[2]
    h, w = image.shape[:2]
    res = MaskEmbedder(tiny_sam, points_per_side=4)([image])[0]
    np.testing.assert_allclose(res.points, build_point_grid(4) * [w, h], rtol=1e-6)
    assert res.points.dtype == np.float32 and len(res.points) == 16
    np.testing.assert_array_equal(res.areas, res.masks.reshape(16, -1).sum(1))
    for mask, box in zip(res.masks, res.boxes, strict=True):
        if not mask.any():
            assert box.tolist() == [0, 0, 0, 0]
            continue
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    assert ((res.stability >= 0) & (res.stability <= 1)).all()


def test_image_embedding_and_encoder_batching(
    tiny_sam: LoadedSam, images: list[np.ndarray]
) -> None:
    one_by_one = [MaskEmbedder(tiny_sam, image_embeddings=True)([im])[0] for im in images]
    batched = MaskEmbedder(tiny_sam, image_embeddings=True)(images)
    for a, b in zip(one_by_one, batched, strict=True):
        assert a.image_embedding.shape == (256, 8, 8)
        np.testing.assert_allclose(a.image_embedding, b.image_embedding, atol=1e-5)
        assert (a.masks != b.masks).mean() < 1e-3


def test_point_grid_scales_to_the_image() -> None:
    grid = point_grid(2, (10, 20))
    assert grid.tolist() == [[5.0, 2.5], [15.0, 2.5], [5.0, 7.5], [15.0, 7.5]]


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                 np.zeros((8, 8, 4), np.uint8)])
def test_wrong_image_arrays_are_refused(tiny_sam: LoadedSam, bad: np.ndarray) -> None:
    with pytest.raises(DataError, match="uint8 RGB"):
        MaskEmbedder(tiny_sam)([bad])


def test_compiled_mode_matches_eager(tiny_sam: LoadedSam, images: list[np.ndarray]) -> None:
    from segloop.models import load_sam

    eager = MaskEmbedder(tiny_sam, points_per_batch=50)([images[0]])[0]
    compiled_sam = load_sam("tiny", device="cpu", seed=1)  # compile hooks its own copy
    embedder = MaskEmbedder(compiled_sam, points_per_batch=50, compile=True)
    res = embedder([images[0]])[0]
    np.testing.assert_allclose(res.tokens, eager.tokens, atol=1e-4)
    np.testing.assert_allclose(res.iou, eager.iou, atol=1e-5)
    assert (res.masks != eager.masks).mean() < 1e-3


def test_non_finite_compiled_output_falls_back_or_explains(
    tiny_sam: LoadedSam, images: list[np.ndarray]
) -> None:
    """A compiled module that gives NaN where eager SAM does not (a stale kernel cache):
    eager from then on with embed.compile: auto, a ConfigError that says how to fix it
    otherwise. Checked on each part's first compiled call."""
    from segloop.errors import ConfigError

    sam = tiny_sam.model

    def nan_encoder(x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(sam.image_encoder(x), float("nan"))

    def nan_decoder(**kw: object) -> tuple[torch.Tensor, torch.Tensor]:
        low_res, iou = sam.mask_decoder(**kw)
        return low_res, iou * float("nan")

    eager = MaskEmbedder(tiny_sam)([images[0]])[0]
    for part, broken in (("_encoder", nan_encoder), ("_decoder", nan_decoder)):
        embedder = MaskEmbedder(tiny_sam, compile=False, compile_fallback=True)
        embedder.compiled = True  # as if compiled, with broken kernels
        setattr(embedder, part, broken)
        with pytest.warns(RuntimeWarning, match="non-finite values where eager SAM gives"):
            res = embedder([images[0]])[0]
        assert not embedder.compiled
        np.testing.assert_array_equal(res.tokens, eager.tokens)  # the same eager modules
        np.testing.assert_array_equal(res.iou, eager.iou)
        strict = MaskEmbedder(tiny_sam)
        strict.compiled = True
        setattr(strict, part, broken)
        with pytest.raises(ConfigError, match="TORCHINDUCTOR_CACHE_DIR.*embed.compile: false"):
            strict([images[0]])


def test_failed_compilation_falls_back_or_explains(
    tiny_sam: LoadedSam, images: list[np.ndarray]
) -> None:
    from segloop.errors import ConfigError

    def broken(*args: object, **kw: object) -> None:
        raise torch._dynamo.exc.BackendCompilerFailed(broken, RuntimeError("no g++"), None)

    eager = MaskEmbedder(tiny_sam)([images[0]])[0]
    embedder = MaskEmbedder(tiny_sam, compile=False, compile_fallback=True)
    embedder.compiled, embedder._encoder = True, broken  # as if torch.compile had failed
    with pytest.warns(RuntimeWarning, match="running SAM eagerly"):
        res = embedder([images[0]])[0]
    assert not embedder.compiled
    # the fallback runs the same eager modules on the same batch: bit-identical
    np.testing.assert_array_equal(res.tokens, eager.tokens)
    strict = MaskEmbedder(tiny_sam)
    strict.compiled, strict._encoder = True, broken
    with pytest.raises(ConfigError, match="embed.compile: torch.compile failed"):
        strict([images[0]])
