"""CLIP image-text scoring through transformers, a tiny offline variant, and safe loading.

:class:`ImageTextScorer` is the protocol callers depend on (the synthetic-image filter, the
SAM+CLIP baseline): ``score(images, texts)`` gives, for every image, CLIP's softmax over the
texts of ``logit_scale * cosine(image, text)``. :class:`ClipScorer` implements it with a
``transformers.CLIPModel``; tests may pass any object with the same ``score`` method.

Models:

* ``tiny``: a ``CLIPModel`` with a 2-layer, 32-wide text and vision tower (32x32 input,
  8x8 patches, 16-d projection), seeded random weights, CLIP's image processor at 32x32
  and segloop's own 514-token byte-level tokenizer (no hub download). Plumbing only: its
  scores carry no meaning.
* anything else: a hub id or a local folder, read with ``from_pretrained`` (offline unless
  ``local_files_only`` is false). Missing weights raise :class:`ModelNotFoundError`.

This module also holds the helpers the diffusion backend shares (tiny tokenizer, tiny text
config, local-path detection and the "weights not found" message).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HFValidationError
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
)

from segloop.devices import pick_device
from segloop.errors import DataError, ModelNotFoundError
from segloop.models.seeding import seeded
from segloop.models.tokenizer import (
    BOS,
    EOS,
    load_tiny_clip_tokenizer,
    tiny_vocab,
    write_tiny_clip_tokenizer,
)

#: Where the tiny tokenizer is written when no folder is given.
TINY_TOKENIZER_DIR = Path("~/.cache/segloop/tiny-clip-tokenizer")
_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
_VOCAB = tiny_vocab()
TINY_VOCAB_SIZE, TINY_BOS_ID, TINY_EOS_ID = len(_VOCAB), _VOCAB[BOS], _VOCAB[EOS]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@runtime_checkable
class ImageTextScorer(Protocol):
    """Anything that scores images against texts the way CLIP does."""

    def score(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
        """``images``: (H, W, 3) uint8 RGB each -> (n_images, n_texts) float32 probabilities
        (each row sums to 1: softmax over the texts of logit_scale * cosine(image, text))."""
        ...


# --- helpers shared with segloop.models.diffusion ----------------------------------------


def tiny_tokenizer(tokenizer_dir: str | Path | None = None) -> CLIPTokenizer:
    """segloop's tiny CLIP tokenizer (514 ids, BOS 512, EOS = PAD 513, max length 77).

    Written to ``tokenizer_dir`` (created) or, if None, once to :data:`TINY_TOKENIZER_DIR`
    (written beside it and renamed into place, so parallel processes never read half a
    folder), then loaded through ``CLIPTokenizer.from_pretrained``.
    """
    if tokenizer_dir is not None:
        return load_tiny_clip_tokenizer(Path(tokenizer_dir).expanduser())
    folder = TINY_TOKENIZER_DIR.expanduser()
    if not all((folder / name).is_file() for name in _TOKENIZER_FILES):
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tiny-clip-tokenizer-", dir=folder.parent))
        load_tiny_clip_tokenizer(staging)
        try:
            staging.rename(folder)
        except OSError:  # another process won the race, or a stale partial folder is there
            shutil.rmtree(staging, ignore_errors=True)
            if not all((folder / name).is_file() for name in _TOKENIZER_FILES):
                write_tiny_clip_tokenizer(folder)  # same bytes every time: safe to redo
    return load_tiny_clip_tokenizer(folder)


def tiny_text_config(**overrides: Any) -> dict[str, Any]:
    """``CLIPTextConfig`` arguments of the tiny text tower (32 wide, 2 layers, 4 heads),
    with the special ids of the tiny tokenizer; ``overrides`` replace any of them."""
    config: dict[str, Any] = {
        "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
        "num_attention_heads": 4, "vocab_size": TINY_VOCAB_SIZE,
        "max_position_embeddings": 77, "bos_token_id": TINY_BOS_ID,
        "eos_token_id": TINY_EOS_ID, "pad_token_id": TINY_EOS_ID,
    }
    return {**config, **overrides}


def _looks_like_path(model_id: str) -> bool:
    """True for ids that cannot be hub ids (``/abs``, ``./rel``, ``~``, ``a/b/c``, ``a\\b``)."""
    return (model_id.startswith(("/", ".", "~")) or "\\" in model_id
            or model_id.count("/") > 1 or Path(model_id).is_absolute())


def local_model_path(model_id: str) -> Path | None:
    """The existing local folder ``model_id`` names, or None when it is a hub id.

    An id that can only be a path (see ``_looks_like_path``) but does not exist gives a
    path too: the loader then fails and the error names that path.
    """
    path = Path(model_id).expanduser()
    if path.exists() or _looks_like_path(model_id):
        return path
    return None


def not_found_error(what: str, model_id: str, *, revision: str | None,
                    local_files_only: bool, config_key: str, folder_holds: str,
                    error: BaseException | None = None) -> ModelNotFoundError:
    """A :class:`ModelNotFoundError` saying which model, where it looked and how to fix it.

    ``what``: e.g. "diffusion pipeline"; ``config_key``: e.g. "models.diffusion";
    ``folder_holds``: the files a local model folder must contain.
    """
    cache = hf_constants.HF_HUB_CACHE
    rev = f" (revision {revision})" if revision else ""
    cause = f" [{type(error).__name__}: {' '.join(str(error).split())[:300]}]" if error else ""
    local = local_model_path(model_id)
    if local is not None:
        state = ("does not exist" if not local.exists() else "is a file, not a folder"
                 if not local.is_dir() else "is not a complete model folder")
        return ModelNotFoundError(
            f"{what} {model_id!r} not found on this machine: the local folder "
            f"{local.resolve()} {state}{cause}. To provide it: put {folder_holds} there "
            "(e.g. on a machine with internet `hf download <hub id> --local-dir <folder>`, "
            f"then copy the folder); or set {config_key}.model_id to a hub id whose files are "
            f"in the Hugging Face cache {cache}")
    download = f"hf download {model_id}" + (f" --revision {revision}" if revision else "")
    online = ("local_files_only is true, so nothing was downloaded" if local_files_only
              else "downloading failed")
    fixes = [f"on a machine with internet run `{download}` (older huggingface_hub: "
             f"`huggingface-cli download ...`) and copy its cache folder into {cache} "
             "(or point HF_HUB_CACHE at the copy)",
             f"set {config_key}.model_id to a local folder holding {folder_holds}"]
    if local_files_only:
        fixes.append(f"on a machine with internet set {config_key}.local_files_only: false")
    return ModelNotFoundError(
        f"{what} {model_id!r}{rev} not found on this machine; looked in the Hugging Face "
        f"cache {cache} (models--{model_id.replace('/', '--')}); {online}{cause}. "
        "To provide it: " + "; or ".join(fixes))


# --- the scorer --------------------------------------------------------------------------


class ClipScorer:
    """CLIP image-text scores with a ``transformers.CLIPModel`` (float32, eval mode).

    ``processor`` is a ``CLIPProcessor`` (its ``image_processor`` and ``tokenizer`` are
    used); work is done in batches of ``batch_size`` under ``torch.inference_mode``.
    """

    def __init__(self, model: CLIPModel, processor: CLIPProcessor, device: torch.device | str,
                 batch_size: int = 32) -> None:
        self.device = torch.device(device)
        self.model = model.to(device=self.device, dtype=torch.float32).eval()
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.batch_size = max(1, int(batch_size))

    @property
    def dim(self) -> int:
        """Width d of the joint embedding space (``projection_dim``)."""
        return int(self.model.config.projection_dim)

    @property
    def logit_scale(self) -> float:
        """CLIP's temperature ``exp(model.logit_scale)`` (about 100 for trained models)."""
        return float(self.model.logit_scale.detach().float().exp().cpu())

    @torch.inference_mode()
    def image_embeddings(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(H, W, 3) uint8 RGB images -> (n, d) float32 L2-normalised embeddings."""
        arrays = [_check_image(image, i) for i, image in enumerate(images)]
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(arrays), self.batch_size):
            pixels = self.image_processor(images=arrays[i : i + self.batch_size],
                                          input_data_format="channels_last",
                                          return_tensors="pt")["pixel_values"]
            pooled = self.model.vision_model(
                pixel_values=pixels.to(self.device, torch.float32)).pooler_output
            out.append(_unit(self.model.visual_projection(pooled)))
        return np.concatenate(out)

    @torch.inference_mode()
    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """m texts -> (m, d) float32 L2-normalised embeddings (truncated to 77 tokens)."""
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise DataError("CLIP texts must be strings; got "
                            f"{sorted({type(t).__name__ for t in texts})}")
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[i : i + self.batch_size], padding=True,
                                    truncation=True, return_tensors="pt")
            pooled = self.model.text_model(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device)).pooler_output
            out.append(_unit(self.model.text_projection(pooled)))
        return np.concatenate(out)

    @torch.inference_mode()
    def score(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
        """(n_images, n_texts) float32: per image, softmax over the texts of
        ``logit_scale.exp() * cosine`` (CLIP's zero-shot probabilities; rows sum to 1)."""
        if len(texts) == 0:
            raise DataError("CLIP score needs at least one text to compare images with; "
                            "got an empty list of texts")
        image = torch.from_numpy(self.image_embeddings(images))
        text = torch.from_numpy(self.text_embeddings(texts))
        scale = self.model.logit_scale.detach().float().exp().cpu()
        return torch.softmax(scale * image @ text.T, dim=-1).numpy().astype(np.float32)


def _unit(x: torch.Tensor) -> np.ndarray:
    return F.normalize(x.float(), dim=-1).cpu().numpy().astype(np.float32)


def _check_image(image: np.ndarray, index: int) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise DataError(f"CLIP image {index} has shape {array.shape} and dtype {array.dtype}; "
                        "expected (H, W, 3) uint8 RGB (convert with "
                        "np.asarray(PIL.Image.open(p).convert('RGB')))")
    return array


# --- builders and loader -----------------------------------------------------------------


def build_tiny_clip(seed: int = 0, tokenizer_dir: str | Path | None = None
                    ) -> tuple[CLIPModel, CLIPProcessor]:
    """A tiny random ``CLIPModel`` (eval mode, CPU, float32) and its ``CLIPProcessor``.

    Same ``seed`` -> identical weights; the global RNG is left untouched. Images are
    resized and centre-cropped to 32x32 with CLIP's mean/std; text uses the tiny tokenizer.
    """
    config = CLIPConfig(
        text_config=tiny_text_config(),
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32,
                       "intermediate_size": 37, "num_hidden_layers": 2,
                       "num_attention_heads": 4},
        projection_dim=16)
    with seeded(seed):
        model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    processor = CLIPProcessor(image_processor=image_processor,
                              tokenizer=tiny_tokenizer(tokenizer_dir))
    return model, processor


_CLIP_FOLDER = ("config.json, model.safetensors (or pytorch_model.bin), "
                "preprocessor_config.json and the tokenizer files")


def load_clip(model_id: str, *, local_files_only: bool = True, device: str = "auto",
              seed: int = 0) -> ClipScorer:
    """A ready :class:`ClipScorer` for ``model_id`` ("tiny", a hub id or a local folder).

    ``seed`` only affects "tiny". Raises :class:`ModelNotFoundError` (model id, cache folder
    or local path, how to provide the weights) when the model is not on this machine.
    """
    torch_device = pick_device(device)
    if model_id == "tiny":
        model, processor = build_tiny_clip(seed)
        return ClipScorer(model, processor, torch_device)
    local = local_model_path(model_id)
    source = str(local) if local is not None else model_id

    def missing(err: BaseException | None) -> ModelNotFoundError:
        return not_found_error("CLIP model", model_id, revision=None,
                               local_files_only=local_files_only, config_key="models.clip",
                               folder_holds=_CLIP_FOLDER, error=err)

    if local is not None and not local.is_dir():
        raise missing(None)
    try:
        model = CLIPModel.from_pretrained(source, local_files_only=local_files_only)
        processor = CLIPProcessor.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, HFValidationError) as err:
        raise missing(err) from err
    return ClipScorer(model, processor, torch_device)
