"""Training the U-SAM heads of a run (teacher, tau, student) with resumable checkpoints.

Heads are safetensors files in the staging folder's ``model/`` with their config (labels,
settings, tau) in the file metadata; a rerun with the same fingerprint loads them instead of
training again. ``model/training.json`` records the losses per epoch and the values used.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from segloop.config import Config
from segloop.data.json_io import read_json
from segloop.devices import pick_device
from segloop.errors import ModelNotFoundError
from segloop.pseudolabel import store
from segloop.pseudolabel.bags import TrainingSet, stream_bags, training_set
from segloop.pseudolabel.plan import PseudoPlan
from segloop.pseudolabel.usam import (
    MaskHead,
    USamSettings,
    build_head,
    median_entropy,
    train_student,
    train_teacher,
)
from segloop.train.checkpoint import load_checkpoint, read_meta, save_checkpoint

TRAINING_FILE = "training.json"


def usam_settings(cfg: Config) -> USamSettings:
    u = cfg.pseudolabel.usam
    return USamSettings(hidden=u.hidden, layers=u.layers, dropout=u.dropout, a=u.a,
                        tau=None if u.tau == "median" else float(u.tau),
                        lambda_mil=u.lambda_mil, lambda_unc=u.lambda_unc, lr=u.lr,
                        batch_size=u.batch_size, epochs=u.epochs, seed=cfg.base.seed + u.seed)


def head_path(staging: Path, which: str) -> Path:
    return staging / store.MODEL_DIR / f"{which}.safetensors"


def _batches(cfg: Config, ts: TrainingSet):  # type: ignore[no-untyped-def]
    u = cfg.pseudolabel.usam

    def epoch(n: int):  # type: ignore[no-untyped-def]
        return stream_bags(ts, n, seed=cfg.base.seed + u.seed, batch_size=u.batch_size,
                           shuffle_buffer=u.shuffle_buffer)
    return epoch


def _load(path: Path, num_classes: int, settings: USamSettings) -> MaskHead | None:
    if not path.is_file():
        return None
    head = build_head(num_classes, settings)
    load_checkpoint(head, path)
    return head.eval()


def train_heads(cfg: Config, plan: PseudoPlan, progress: bool = True) -> dict[str, Any]:
    """Teacher, tau and (if ``usam.distill``) student for ``plan``; returns the training
    record (also written to ``model/training.json``)."""
    staging = plan.paths.staging
    record_path = staging / store.MODEL_DIR / TRAINING_FILE
    s = usam_settings(cfg)
    labels = plan.mapping.labels
    c = len(labels)
    device = pick_device(cfg.base.device)
    ts = training_set(plan.paths.source, plan.paths.manifest, labels)
    batches = _batches(cfg, ts)
    meta = {"labels": list(labels), "settings": s.__dict__, "in_dim": 1024}
    start = time.perf_counter()
    # each head's training history travels in its checkpoint, so a run killed between the
    # two heads records the same history as one that was not
    teacher = _load(head_path(staging, "teacher"), c, s)
    if teacher is None:
        teacher, hist = train_teacher(batches, c, s, device, progress)
        save_checkpoint(teacher, head_path(staging, "teacher"),
                        {**meta, "role": "teacher", "history": hist.epochs})
    teacher_hist = read_meta(head_path(staging, "teacher")).get("history")
    teacher = teacher.cpu().eval()
    record: dict[str, Any] = {"images": ts.images, "missing_embeddings": ts.missing,
                              "labels": list(labels), "settings": s.__dict__}
    if cfg.pseudolabel.usam.distill:
        student_file = head_path(staging, "student")
        student = _load(student_file, c, s)
        if student is None:
            tau = s.tau if s.tau is not None else median_entropy(teacher, batches(0), device)
            student, student_hist = train_student(batches, teacher, tau, c, s, device, progress)
            save_checkpoint(student, student_file, {**meta, "role": "student", "tau": tau,
                                                    "history": student_hist.epochs})
        student_meta = read_meta(student_file)
        if student_meta.get("history") is not None:
            record["student_history"] = student_meta["history"]
        tau = float(student_meta["tau"])
        record["tau"] = tau
        record["tau_rule"] = "median teacher mask entropy" if s.tau is None else "configured"
    if teacher_hist is not None:
        record["teacher_history"] = teacher_hist
    old = _read_record(record_path)
    record = {**old, **record, "seconds": round(old.get("seconds", 0.0)
                                                + time.perf_counter() - start, 3)}
    store.write_json(record_path, record)
    return record


def _read_record(path: Path) -> dict[str, Any]:
    return (read_json(path, "delete it (and the staging folder's model/) and rerun to "
                      "retrain the heads") if path.is_file() else {})


def inference_head(cfg: Config, plan: PseudoPlan) -> MaskHead:
    """The head that labels the targets: the student, or the teacher without distillation."""
    which = "student" if cfg.pseudolabel.usam.distill else "teacher"
    head = _load(head_path(plan.paths.staging, which), len(plan.mapping.labels),
                 usam_settings(cfg))
    if head is None:
        raise ModelNotFoundError(f"{head_path(plan.paths.staging, which)} is missing: "
                                "train the heads first (pseudolabel flow, step 3)")
    return head.to(pick_device(cfg.base.device)).eval()
