"""``tracking``: where flows report runs, metrics and models besides Prefect (MLflow)."""

from __future__ import annotations

from pydantic import Field, field_validator

from segloop.config.section import Section


class TrackingConfig(Section):
    """MLflow tracking (the optional extra ``segloop[mlflow]``), off unless ``mlflow`` is set;
    a FiftyOne dataset of the active-learning workspace (``segloop[fiftyone]``), updated by
    the flow when ``fiftyone`` is set.

    ``mlflow: true`` keeps a local store in the workspace (``work/mlflow/mlflow.db``, SQLite,
    artifacts beside it; never committed); a string is any MLflow tracking URI
    (``http://mlflow:5000``, ``sqlite:////abs/path.db``, ``databricks``). Every flow run
    logs one MLflow run (the active-learning loop one per workspace, continued when a run
    resumes, with a nested run per round).
    """

    mlflow: bool | str = Field(
        False, description="false: off; true: a local SQLite store in the workspace "
        "(work/mlflow); or any MLflow tracking URI.")
    experiment: str | None = Field(
        None, description="MLflow experiment name; None: 'segloop-<flow name>', e.g. "
        "'segloop-active_learning'.")
    log_models: bool = Field(
        True, description="log each round's checkpoint as an MLflow model (with its "
        "signature), so `segloop models promote` can register it.")
    registered_model: str = Field(
        "segloop-segmenter", description="model registry name `segloop models promote` "
        "registers a round's model under (alias 'champion').")
    ui_url: str = Field(
        "http://127.0.0.1:5000", description="where the MLflow UI is served (`segloop "
        "dashboards mlflow` serves the local store there): links in Prefect artifacts.")
    fiftyone: bool = Field(
        False, description="update the workspace's FiftyOne dataset (segloop[fiftyone]) at "
        "the end of each active_learning flow run, as `segloop fiftyone export` does.")
    fiftyone_url: str = Field(
        "http://127.0.0.1:5151", description="where the FiftyOne App is served (`segloop "
        "dashboards fiftyone`): links to the dataset in Prefect artifacts and MLflow.")

    @field_validator("mlflow")
    @classmethod
    def _uri(cls, value: bool | str) -> bool | str:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("tracking.mlflow: an empty URI; use true (local store in the "
                                 "workspace), false (off) or a tracking URI")
            if value.strip().lower() in {"true", "false", "yes", "no", "on", "off"}:
                raise ValueError(f"tracking.mlflow: {value!r} is a quoted boolean; write it "
                                 "unquoted (true / false) or give a tracking URI")
        return value

    @property
    def enabled(self) -> bool:
        return self.mlflow is not False
