"""SAM grid-mode extraction (U-SAM; docs/algorithms.md §2, step 2): one output per point prompt.

Every step calls segment-anything's own modules in the order ``SamPredictor`` does:
``ResizeLongestSide`` + ``Sam.preprocess`` + ``image_encoder`` once per image (batched
across images), then ``prompt_encoder`` + ``mask_decoder(multimask_output=True)`` per batch
of points and ``Sam.postprocess_masks`` for the original-size masks. The U-SAM mask
embedding (the decoder's four mask-token outputs) is not returned by SAM; it is captured
with a forward hook on ``mask_decoder.transformer``, whose first output ``hs`` holds the
IoU token at index 0 and the mask tokens at 1..4 (``MaskDecoder.predict_masks``). The hook
reads that tensor and changes nothing, so the masks and scores are exactly SAM's.

Coordinates: points are (x, y) in pixels of the original image, x to the right, y down.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.amg import (
    batched_mask_to_box,
    build_point_grid,
    calculate_stability_score,
)
from segment_anything.utils.transforms import ResizeLongestSide

from segloop.errors import ConfigError, DataError
from segloop.models.sam import LoadedSam

TOKEN_DIM = 4 * 256
"""Length of one mask embedding: four mask tokens of 256 floats."""


@dataclass
class ImageMasks:
    """What grid-mode SAM gives for one image with P point prompts (H, W = original size).

    Attributes:
        points: (P, 2) float32, the prompts' (x, y) in pixels.
        tokens: (P, 1024) float32, the four mask-token outputs of the decoder, flattened
            token-major (token 0's 256 values first).
        best: (P,) int8, which of the three multimask outputs has the highest predicted IoU.
        iou: (P,) float32, predicted IoU of the best mask.
        stability: (P,) float32, stability score of the best mask (offset 1.0, as SAM's AMG).
        masks: (P, H, W) bool, the best mask: its low-res logits upsampled as
            ``SamPredictor`` does and thresholded at the model's ``mask_threshold``.
        boxes: (P, 4) int32, (x0, y0, x1, y1) inclusive pixel extent; zeros if empty.
        areas: (P,) int64, foreground pixels of each mask.
        all_masks / all_iou / all_stability: (P, 3, H, W) bool, (P, 3), (P, 3) for the three
            multimask outputs, or None when not asked for.
        image_embedding: (256, h, w) float32 (h = w = 64 for the released models) or None.
    """

    points: np.ndarray
    tokens: np.ndarray
    best: np.ndarray
    iou: np.ndarray
    stability: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    all_masks: np.ndarray | None = None
    all_iou: np.ndarray | None = None
    all_stability: np.ndarray | None = None
    image_embedding: np.ndarray | None = None


def point_grid(points_per_side: int, hw: tuple[int, int]) -> np.ndarray:
    """SAM's AMG grid (cell centres) scaled to an (H, W) image: (n^2, 2) float32 (x, y)."""
    h, w = hw
    grid = build_point_grid(points_per_side)  # (n^2, 2) in [0, 1], x then y
    return (grid * np.array([[w, h]], dtype=np.float64)).astype(np.float32)


class TokenCapture:
    """Forward hook on a ``TwoWayTransformer``: keeps its ``hs`` output (B, T, 256).

    Kept per thread: a hook runs in the thread that called the model, so shards embedded
    in parallel threads with one shared model each read their own tokens, never another
    shard's."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def hs(self) -> torch.Tensor | None:
        return getattr(self._local, "hs", None)

    @hs.setter
    def hs(self, value: torch.Tensor | None) -> None:
        self._local.hs = value

    def __call__(self, module: torch.nn.Module, args: object, output: object) -> None:
        self.hs = output[0]  # type: ignore[index]


@contextmanager
def capture_tokens(sam: Sam) -> Iterator[TokenCapture]:
    """Record the decoder transformer's token outputs while the block runs."""
    cap = TokenCapture()
    handle = sam.mask_decoder.transformer.register_forward_hook(cap)
    try:
        yield cap
    finally:
        handle.remove()


def _finite(out: object) -> bool:
    """Whether every tensor in ``out`` (a tensor, or a tuple / list of them) is finite."""
    if isinstance(out, torch.Tensor):
        return bool(torch.isfinite(out).all())
    if isinstance(out, tuple | list):
        return all(_finite(o) for o in out)
    return True


def _compile_failures() -> tuple[type[BaseException], ...]:
    """Exceptions torch.compile raises when it cannot build kernels (no C++ compiler...)."""
    found: list[type[BaseException]] = [torch._dynamo.exc.BackendCompilerFailed]
    inductor = getattr(torch, "_inductor", None)
    for name in ("InductorError", "CppCompileError", "InvalidCxxCompiler"):
        cls = getattr(getattr(inductor, "exc", None), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


class MaskEmbedder:
    """Grid-mode SAM over images: tokens, best masks, scores (see :class:`ImageMasks`)."""

    def __init__(
        self,
        loaded: LoadedSam,
        *,
        points_per_side: int = 10,
        points_per_batch: int = 20,
        all_masks: bool = False,
        image_embeddings: bool = False,
        stability_offset: float = 1.0,
        compile: bool = False,
        compile_fallback: bool = False,
    ) -> None:
        if points_per_side < 1 or points_per_batch < 1:
            raise ValueError("points_per_side and points_per_batch must be >= 1")
        self.sam = loaded.model
        self.device, self.dtype = loaded.device, loaded.dtype
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.all_masks = all_masks
        self.image_embeddings = image_embeddings
        self.stability_offset = stability_offset
        self.transform = ResizeLongestSide(self.sam.image_encoder.img_size)
        self.num_mask_tokens = self.sam.mask_decoder.num_mask_tokens
        self.compiled = compile
        self.compile_fallback = compile_fallback
        self._encoder: torch.nn.Module = self.sam.image_encoder
        self._decoder: torch.nn.Module = self.sam.mask_decoder
        self._capture: TokenCapture | None = None
        self._checked: set[str] = set()  # parts whose compiled output was checked finite
        if compile:
            # torch.compile traces hooks present at compile time into the graph: keep one
            # registered for this embedder's lifetime instead of one per call.
            self._capture = TokenCapture()
            self.sam.mask_decoder.transformer.register_forward_hook(self._capture)
            self._encoder = torch.compile(self.sam.image_encoder, dynamic=False)
            self._decoder = torch.compile(self.sam.mask_decoder, dynamic=False)

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> list[ImageMasks]:
        """Run SAM on (H, W, 3) uint8 RGB images (sizes may differ); one result each."""
        features, input_sizes = self.encode(images)
        return [
            self.decode(features[i : i + 1], image.shape[:2], input_sizes[i])
            for i, image in enumerate(images)
        ]

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Image embeddings (B, 256, h, w) and each image's resized (unpadded) input size."""
        batch, sizes = [], []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise DataError(f"SAM needs (H, W, 3) uint8 RGB images, got shape "
                                f"{image.shape} and dtype {image.dtype}")
            resized = self.transform.apply_image(image)
            tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None]
            sizes.append((int(tensor.shape[-2]), int(tensor.shape[-1])))
            batch.append(self.sam.preprocess(tensor.to(self.dtype)))
        return self._run("encoder", torch.cat(batch)), sizes

    def _run(self, part: str, *args: object, **kw: object) -> object:
        """Call the (maybe compiled) encoder or decoder; handle a failed compilation, and a
        compiled module whose first output is not finite where the eager one is."""
        module = self._encoder if part == "encoder" else self._decoder
        if not self.compiled:
            return module(*args, **kw)
        try:
            out = module(*args, **kw)
        except _compile_failures() as err:
            first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            self._fall_back(f"torch.compile failed ({first})",
                            "on CPU it needs a C++ compiler and Python's headers (apt install "
                            "g++ python3-dev)", err)
            return self._eager(part)(*args, **kw)
        if part in self._checked:
            return out
        self._checked.add(part)
        if _finite(out):
            return out
        eager = self._eager(part)(*args, **kw)
        if _finite(eager):  # the compiled kernels are wrong, not the model
            self._fall_back(f"the compiled SAM {part} gave non-finite values where eager SAM "
                            "gives finite ones",
                            "a stale or broken kernel cache? Clear torch's inductor cache "
                            "(TORCHINDUCTOR_CACHE_DIR, by default /tmp/torchinductor_<user>)")
        return eager  # non-finite too: the model itself; embed_shard names the image

    def _eager(self, part: str) -> torch.nn.Module:
        return self.sam.image_encoder if part == "encoder" else self.sam.mask_decoder

    def _fall_back(self, what: str, fix: str, err: BaseException | None = None) -> None:
        """Run eagerly from now on (``compile_fallback``, embed.compile: auto), or raise."""
        if not self.compile_fallback:
            raise ConfigError(f"embed.compile: {what}; {fix}, or set embed.compile: false"
                              ) from err
        warnings.warn(f"{what}; running SAM eagerly (embed.compile: auto)", RuntimeWarning,
                      stacklevel=3)
        self.compiled = False
        self._encoder, self._decoder = self.sam.image_encoder, self.sam.mask_decoder

    @torch.inference_mode()
    def decode(
        self, features: torch.Tensor, original_hw: tuple[int, int], input_hw: tuple[int, int]
    ) -> ImageMasks:
        """Decode the point grid against one image's ``features`` (1, 256, h, w)."""
        points = point_grid(self.points_per_side, original_hw)
        parts = [self._decode_batch(features, points[i : i + self.points_per_batch],
                                    original_hw, input_hw)
                 for i in range(0, len(points), self.points_per_batch)]
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        embedding = None
        if self.image_embeddings:
            embedding = features[0].float().cpu().numpy()
        return ImageMasks(points=points, image_embedding=embedding, **out)

    def _decode_batch(
        self,
        features: torch.Tensor,
        points: np.ndarray,
        original_hw: tuple[int, int],
        input_hw: tuple[int, int],
    ) -> dict[str, np.ndarray]:
        sam = self.sam
        coords = self.transform.apply_coords(points, original_hw)
        # the prompt encoder runs in float32 (segloop.models.sam.in_dtype); its outputs
        # are cast to the decoder's dtype
        coords_t = torch.as_tensor(coords, dtype=torch.float32,
                                   device=self.device)[:, None, :]
        labels_t = torch.ones(coords_t.shape[:2], dtype=torch.int, device=self.device)
        sparse, dense = sam.prompt_encoder(points=(coords_t, labels_t), boxes=None, masks=None)
        sparse, dense = sparse.to(self.dtype), dense.to(self.dtype)
        hooked = self._capture is not None
        with nullcontext(self._capture) if hooked else capture_tokens(sam) as cap:
            cap.hs = None
            low_res, iou = self._run(
                "decoder",
                image_embeddings=features,
                image_pe=sam.prompt_encoder.get_dense_pe().to(self.dtype),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
        assert cap.hs is not None  # the hook ran inside mask_decoder
        tokens = cap.hs[:, 1 : 1 + self.num_mask_tokens].flatten(1)
        best = iou.argmax(dim=1)
        rows = torch.arange(len(best), device=best.device)
        chosen = low_res if self.all_masks else low_res[rows, best][:, None]
        logits = sam.postprocess_masks(chosen, input_hw, original_hw)
        stability = calculate_stability_score(logits, sam.mask_threshold, self.stability_offset)
        binary = logits > sam.mask_threshold
        out: dict[str, np.ndarray] = {"tokens": tokens.float().cpu().numpy(),
                                      "best": best.to(torch.int8).cpu().numpy()}
        if self.all_masks:
            out["all_masks"] = binary.cpu().numpy()
            out["all_iou"] = iou.float().cpu().numpy()
            out["all_stability"] = stability.float().cpu().numpy()
            binary, stability = binary[rows, best], stability[rows, best]
        else:
            binary, stability = binary[:, 0], stability[:, 0]
        out["iou"] = iou[rows, best].float().cpu().numpy()
        out["stability"] = stability.float().cpu().numpy()
        out["masks"] = binary.cpu().numpy()
        out["boxes"] = batched_mask_to_box(binary).to(torch.int32).cpu().numpy()
        out["areas"] = binary.flatten(1).sum(1).to(torch.int64).cpu().numpy()
        return out
