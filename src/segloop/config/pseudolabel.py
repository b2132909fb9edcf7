"""``pseudolabel``: seed rounds (U-SAM, SAM+CLIP, MaskDiffusion, clusters, G4Seg)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from segloop.config.section import Section


class USamConfig(Section):
    """The U-SAM head (U-SAM, Kundu et al.; docs/algorithms.md §2, steps 3-6); the paper
    leaves the width, the number of epochs and tau open: segloop's choices are these defaults."""

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
    """The SAM+CLIP baseline (U-SAM; docs/algorithms.md §2, step 8); CLIP from models.clip."""

    template: str = Field("a photo of a {c}", pattern=r"\{c\}")
    score: Literal["cosine", "probability"] = Field(
        "cosine", description="cosine: image-text cosine (the spec; real CLIP rarely passes "
        "0.7); probability: CLIP's softmax over the classes")
    threshold: float = Field(0.7, description="keep a mask whose best score reaches this")
    crop: bool = Field(True, description="crop each masked image to its box (plus pad)")
    pad: float = Field(0.1, ge=0.0, description="box padding, as a fraction of its size")
    batch_size: int = Field(32, ge=1)


class MaskDiffusionConfig(Section):
    """MaskDiffusion (Kawano and Aoki 2024; docs/algorithms.md §4b): one UNet pass of the
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
    """G4Seg refinement (Zhang et al. 2025; docs/algorithms.md §4) of a seed round's soft maps;
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
    """Seeds by feature clustering and seeded region growing (Kim 2022, ch. 3;
    docs/algorithms.md §3): SAM image embeddings clustered into superpixels, seeds from a seed
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
