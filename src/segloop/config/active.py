"""``train`` (the segmentation model, semi-supervision) and ``active`` (the loop)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from segloop.config.section import Section


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
    uncertainty_weight: float = Field(0.0, ge=0.0, description="UIG loss on "
                                      "unlabelled pixels (docs/algorithms.md §1; Kawano's "
                                      "thesis uses 0.01); 0 = off")


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
        "balanced_seed: Kim 2022's seed loss, background and foreground pixels each "
        "averaged on their own (for training on sparse seeds)")
    seed_background: int | None = Field(
        None, ge=0, le=254, description="loss balanced_seed: the background class id "
        "(null: every labelled pixel is foreground, i.e. plain cross-entropy)")
    loader_workers: int = Field(
        0, ge=0, description="worker processes of the DataLoader that reads training "
        "batches (images and label rows, from the pool cache or memory); 0 reads them in "
        "the training process. The losses are the same for any number")
    semi: SemiConfig = SemiConfig()


class RegionConfig(Section):
    """Units of labelling at region level."""

    source: Literal["slic", "sam", "clusters"] = Field(
        "slic", description="slic: superpixels; sam: the embed flow's masks of the pool "
        "images (painted by predicted IoU; set sam_embeddings); clusters: the greedy "
        "low-first clustering of SAM's image embeddings (Kim 2022; set sam_embeddings, "
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
    grow: bool = Field(False, description="grow labelled regions into neighbouring regions "
                       "the model is sure of (Kim 2022, ch. 3); grown pixels train, never "
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
