"""Prefect events segloop emits, for deployment triggers (``prefect.yaml``).

``segloop.label-round.committed`` is emitted when a label round is committed: by the
active-learning flow, and by ``segloop labels import`` when a person's labels come in. Its
resource is the workspace (``segloop.workspace.<hash of its path>``) with the labels
``segloop.annotator`` (``human`` for imported labels), ``segloop.round`` and ``segloop.tag``,
so a trigger can start the next round only after people have labelled one.

Events need a Prefect API: inside a flow run there always is one; elsewhere (the CLI) an
event is sent only when ``PREFECT_API_URL`` names a server, never to a temporary one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

LABEL_ROUND_COMMITTED = "segloop.label-round.committed"


def workspace_resource(root: Path, **labels: str) -> dict[str, str]:
    """The resource of a workspace: a stable id from its absolute path, its name and path."""
    path = str(Path(root).resolve())
    digest = hashlib.sha256(path.encode()).hexdigest()[:16]
    return {"prefect.resource.id": f"segloop.workspace.{digest}",
            "prefect.resource.name": Path(path).name, "segloop.workspace": path, **labels}


def _api_configured() -> bool:
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL

    return FlowRunContext.get() is not None or bool(PREFECT_API_URL.value())


def emit_label_round(root: Path, number: int, tag: str, commit: str,
                     annotator: str) -> Any:
    """Emit ``segloop.label-round.committed`` for round ``number`` of the workspace at
    ``root``; returns the event (None when no Prefect API is configured)."""
    if not _api_configured():
        return None
    from prefect.events import emit_event

    resource = workspace_resource(root, **{"segloop.annotator": annotator,
                                          "segloop.round": str(number), "segloop.tag": tag})
    return emit_event(event=LABEL_ROUND_COMMITTED, resource=resource,
                      payload={"round": number, "tag": tag, "commit": commit,
                               "annotator": annotator})
