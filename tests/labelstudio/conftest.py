"""A real Label Studio server for the end-to-end labelling test.

Label Studio is installed in its own virtual environment (it pins its own Django, pydantic
and numpy, which must not meet segloop's): ``$SEGLOOP_LS_VENV``, default
``~/.cache/segloop/label-studio-<version>``, created on first use with pip (a few minutes;
needs the package index). The server runs on a free local port with a throw-away data
folder, Local Storage serving enabled under a document root the test writes its images to,
and is stopped (its whole process group) at the end of the module.

Run alone with ``pytest -m labelstudio tests/labelstudio`` (the marker keeps it out of the
default suite); ``benchmarks/reliability.py`` runs it and records the outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from segloop.testing import free_port, served

LS_VERSION = "1.23.2"
USER = "labeller@example.org"
PASSWORD = "segloop-e2e-password"  # a throw-away server on localhost
INSTALL_TIMEOUT_S = 1200
START_TIMEOUT_S = 300


def ls_venv() -> Path:
    """Label Studio's own environment, created (pip install) if it is not there yet."""
    venv = Path(os.environ.get("SEGLOOP_LS_VENV")
                or Path.home() / ".cache" / "segloop" / f"label-studio-{LS_VERSION}")
    exe = venv / "bin" / "label-studio"
    if exe.is_file():
        return venv
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
           f"label-studio=={LS_VERSION}"]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if done.returncode != 0 or not exe.is_file():
        raise RuntimeError(f"could not install label-studio=={LS_VERSION} into {venv} (pip "
                           f"needs the package index):\n{done.stderr[-2000:]}")
    return venv


class LabelStudio:
    """A logged-in client of a running Label Studio (personal access token, refreshed)."""

    def __init__(self, url: str, venv: Path) -> None:
        self.url, self.venv = url, venv
        self._access = ""
        self._refresh = self._personal_access_token()

    def _personal_access_token(self) -> str:
        # Legacy tokens are off by default in 1.23: log in as a person would, then create a
        # personal access token (a JWT refresh token) the API accepts.
        with httpx.Client(base_url=self.url, follow_redirects=True, timeout=60) as web:
            web.get("/user/login/")
            web.post("/user/login/", data={"email": USER, "password": PASSWORD,
                                           "csrfmiddlewaretoken": web.cookies["csrftoken"]},
                     headers={"Referer": f"{self.url}/user/login/"})
            r = web.post("/api/token/", headers={"X-CSRFToken": web.cookies["csrftoken"],
                                                 "Referer": f"{self.url}/"})
            r.raise_for_status()
            return str(r.json()["token"])

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        for _ in range(2):
            if not self._access:
                r = httpx.post(f"{self.url}/api/token/refresh/", json={"refresh": self._refresh})
                r.raise_for_status()
                self._access = r.json()["access"]
            r = httpx.request(method, f"{self.url}{path}", timeout=120,
                              headers={"Authorization": f"Bearer {self._access}"}, **kw)
            if r.status_code != 401:
                r.raise_for_status()
                return r
            self._access = ""  # expired: refresh once
        r.raise_for_status()
        return r

    def create_project(self, title: str, label_config: str) -> int:
        r = self.request("POST", "/api/projects", json={"title": title,
                                                        "label_config": label_config})
        return int(r.json()["id"])

    def add_local_storage(self, project: int, folder: Path) -> None:
        """A Local Storage connection over ``folder`` (lets /data/local-files serve it)."""
        self.request("POST", "/api/storages/localfiles",
                     json={"project": project, "path": str(folder), "title": "images",
                           "use_blob_urls": True})

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> None:
        self.request("POST", f"/api/projects/{project}/import", json=tasks)

    def tasks(self, project: int) -> list[dict[str, Any]]:
        r = self.request("GET", "/api/tasks", params={"project": project, "page_size": 1000,
                                                      "fields": "all"})
        body = r.json()
        return list(body["tasks"] if isinstance(body, dict) else body)

    def annotate(self, task: int, result: list[dict[str, Any]]) -> None:
        self.request("POST", f"/api/tasks/{task}/annotations",
                     json={"result": result, "was_cancelled": False})

    def export_json(self, project: int, out: Path) -> Path:
        r = self.request("GET", f"/api/projects/{project}/export",
                         params={"exportType": "JSON"})
        out.write_bytes(r.content)
        return out

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def encode_masks(self, masks: dict[str, np.ndarray]) -> dict[str, list[int]]:
        """Brush RLE of each (H, W) bool mask, by Label Studio's own encoder
        (label_studio_sdk.converter.brush.mask2rle, run in its environment)."""
        code = ("import json, sys, numpy as np\n"
                "from label_studio_sdk.converter.brush import mask2rle\n"
                "d = json.load(sys.stdin)\n"
                "print(json.dumps({k: [int(v) for v in mask2rle(np.array(m, np.uint8) * 255)]"
                " for k, m in d.items()}))\n")
        done = subprocess.run([str(self.venv / "bin" / "python"), "-c", code], check=True,
                              input=json.dumps({k: m.astype(int).tolist()
                                                for k, m in masks.items()}),
                              capture_output=True, text=True, timeout=120)
        return dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def document_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder Label Studio serves local files from (LOCAL_FILES_DOCUMENT_ROOT)."""
    return tmp_path_factory.mktemp("ls-documents").resolve()


@pytest.fixture(scope="module")
def label_studio(document_root: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[LabelStudio]:
    venv = ls_venv()
    port = free_port()
    data = tmp_path_factory.mktemp("ls-data")
    env = {**os.environ, "LOCAL_FILES_SERVING_ENABLED": "true",
           "LOCAL_FILES_DOCUMENT_ROOT": str(document_root), "LATEST_VERSION_CHECK": "false",
           "COLLECT_ANALYTICS": "false", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true"}
    cmd = [str(venv / "bin" / "label-studio"), "start", "--no-browser", "--port", str(port),
           "--data-dir", str(data), "--username", USER, "--password", PASSWORD]
    url = f"http://127.0.0.1:{port}"
    with served(cmd, f"{url}/health", data / "server.log", env, START_TIMEOUT_S):
        yield LabelStudio(url, venv)
