"""``embed``: SAM mask embeddings to Parquet shards."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from segloop.config.section import Section


class EmbedConfig(Section):
    """SAM mask embeddings to Parquet (U-SAM; docs/algorithms.md §2, step 2): the ``embed`` flow."""

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
