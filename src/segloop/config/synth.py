"""``synth``: synthetic images per class with Stable Diffusion."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from segloop.config.section import Section


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
