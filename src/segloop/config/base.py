"""``base``: seed, device and where segloop keeps its state."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from segloop.config.section import Section


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
