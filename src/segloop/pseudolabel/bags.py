"""U-SAM training data: bags of d mask embeddings per synthetic image, streamed from Parquet.

The embed flow's ``mask_embeddings`` files hold one row per (image, point), in point order
per image. :func:`training_set` joins them with the synthetic manifest (the class each image
was generated for; an image listed under several labels gets a multi-hot target) without
reading any embedding. :func:`stream_bags` then reads the files one record batch at a time,
gathers each image's d rows into a bag, passes bags through a shuffle buffer and yields
mini-batches. Peak memory is the shuffle buffer (``shuffle_buffer`` x d x 1024 x 2 bytes:
about 200 MB for 1024 images at d = 100 in float16) plus the row group of the file being
read (``embed.row_group_mb``, 64 MB by default); no epoch holds the whole training set.
"""

from __future__ import annotations

import posixpath
import queue
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from segloop.data.fs import join, to_url, url_to_fs
from segloop.data.parquet import read_table
from segloop.data.schemas import MANIFEST_FILE, SYNTHETIC_MANIFEST
from segloop.errors import ConfigError, DataError

READ_ROWS = 2048  # rows per record batch (2048 x 1024 float16 = 4 MB)


@dataclass(frozen=True)
class TrainingSet:
    """The synthetic images that have embeddings, with their targets.

    Attributes:
        labels: the C head classes, in the manifest's label order.
        targets: image id -> (C,) float32 multi-hot target.
        files: URLs of the ``mask_embeddings`` files to stream.
        missing: manifest images without embeddings (not trained on).
    """

    labels: tuple[str, ...]
    targets: dict[str, np.ndarray]
    files: tuple[str, ...]
    missing: int

    @property
    def images(self) -> int:
        return len(self.targets)


def manifest_labels(manifest: str) -> tuple[tuple[str, ...], dict[str, set[str]]]:
    """(labels in ``class_index`` order, image id -> its labels) of a synthetic manifest."""
    fs, path = url_to_fs(manifest)
    if fs.isdir(path):
        path = posixpath.join(path.rstrip("/"), MANIFEST_FILE)
    url = to_url(fs, path)
    if not fs.isfile(path):
        raise DataError(f"synthetic manifest {url} does not exist: run the synthesize flow "
                        "first, or set pseudolabel.manifest to its dataset folder")
    table = read_table(url, SYNTHETIC_MANIFEST, columns=["image_id", "label", "class_index"])
    order: dict[str, int] = {}
    by_image: dict[str, set[str]] = {}
    for row in table.to_pylist():
        order.setdefault(row["label"], int(row["class_index"]))
        by_image.setdefault(row["image_id"], set()).add(row["label"])
    labels = tuple(sorted(order, key=lambda name: (order[name], name)))
    return labels, by_image


def choose_labels(all_labels: Sequence[str], wanted: Sequence[str], manifest: str
                  ) -> tuple[str, ...]:
    """``wanted`` (or, if empty, every label of the manifest), checked: known, at least 2."""
    chosen = tuple(wanted) or tuple(all_labels)
    unknown = [name for name in chosen if name not in all_labels]
    if unknown:
        raise ConfigError(f"pseudolabel.classes: {unknown} are not labels of the synthetic "
                          f"dataset {manifest} (it has {list(all_labels)})")
    if len(chosen) < 2:
        raise ConfigError(f"U-SAM needs at least 2 labels to tell apart; {manifest} gives "
                          f"{list(chosen)}: synthesize more classes")
    return chosen


def training_set(source: str, manifest: str, labels: Sequence[str] = ()) -> TrainingSet:
    """Join the embed output ``source`` with the synthetic ``manifest``.

    ``labels`` restricts (and orders) the head's classes; empty = every manifest label.
    Images with embeddings but no manifest row (or only other labels) are not used.
    """
    all_labels, by_image = manifest_labels(manifest)
    chosen = choose_labels(all_labels, labels, manifest)
    index = {name: i for i, name in enumerate(chosen)}
    files = mask_files(source)
    embedded = set(_embedded_ids(files))
    targets: dict[str, np.ndarray] = {}
    missing = 0
    for image, names in by_image.items():
        hot = [index[n] for n in names if n in index]
        if not hot:
            continue
        if image not in embedded:
            missing += 1
            continue
        target = np.zeros(len(chosen), np.float32)
        target[hot] = 1.0
        targets[image] = target
    if not targets:
        raise DataError(f"no image of the synthetic dataset {manifest} has embeddings in "
                        f"{source}: run the embed flow on it (data.format: manifest)")
    return TrainingSet(chosen, targets, tuple(files), missing)


def mask_files(source: str) -> list[str]:
    """The committed ``mask_embeddings`` files of an embed output folder, sorted."""
    fs, root = url_to_fs(join(source, "masks"))
    if not fs.exists(root):
        raise DataError(f"{source} holds no mask embeddings (no masks/ folder): run the "
                        "embed flow first, or fix pseudolabel.source / pseudolabel.target")
    files = sorted(p for p in fs.find(root) if p.endswith(".parquet")
                   and not posixpath.basename(p).startswith("."))
    if not files:
        raise DataError(f"{source}/masks has no Parquet files: run the embed flow first")
    return [to_url(fs, p) for p in files]


def _embedded_ids(files: Sequence[str]) -> Iterator[str]:
    for url in files:
        fs, path = url_to_fs(url)
        with fs.open(path, "rb") as fh:
            column = pq.read_table(fh, columns=["image_id"]).column("image_id")
        yield from set(column.to_pylist())


def _bags_of_file(url: str, wanted: dict[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    """(image id, (d, 1024) embeddings) for the images of one file that are ``wanted``."""
    fs, path = url_to_fs(url)
    current: str | None = None
    rows: list[np.ndarray] = []
    with fs.open(path, "rb") as fh:
        reader = pq.ParquetFile(fh)
        for batch in reader.iter_batches(batch_size=READ_ROWS,
                                         columns=["image_id", "point_index", "embedding"]):
            ids = batch.column("image_id").to_numpy(zero_copy_only=False)
            emb = batch.column("embedding")
            values = emb.flatten().to_numpy(zero_copy_only=False).reshape(len(batch), -1)
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            for s, e in zip(starts, np.r_[starts[1:], len(ids)], strict=True):
                image = str(ids[s])
                if image != current:
                    if current is not None and current in wanted:
                        yield current, np.concatenate(rows)
                    current, rows = image, []
                if image in wanted:
                    rows.append(values[s:e])
    if current is not None and current in wanted:
        yield current, np.concatenate(rows)


def stream_bags(ts: TrainingSet, epoch: int, *, seed: int, batch_size: int,
                shuffle_buffer: int, prefetch: int = 2
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of mini-batches: ((B, d, 1024) float16/32 tensor, (B, C) float32 targets).

    Files are visited in an order shuffled per (seed, epoch); bags pass through a buffer of
    ``shuffle_buffer`` images from which they leave in random order. Every image with a
    target appears exactly once per epoch. Images with differing point counts raise.
    With ``prefetch`` > 0 a background thread reads ahead (up to that many mini-batches),
    so Parquet reading overlaps training; the batches and their order are the same.
    """
    batches = _stream(ts, epoch, seed, batch_size, shuffle_buffer)
    return _prefetched(batches, prefetch) if prefetch > 0 else batches


_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """``items`` produced by a daemon thread, at most ``depth`` ahead; its errors re-raise
    here. Stopping early (or an error here) stops the thread."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as err:  # noqa: BLE001  (handed to the consumer)
            put(_Failed(err))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="segloop-bag-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _stream(ts: TrainingSet, epoch: int, seed: int, batch_size: int,
            shuffle_buffer: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    rng = random.Random(f"{seed}:{epoch}")
    files = list(ts.files)
    rng.shuffle(files)
    buffer: list[tuple[str, np.ndarray]] = []
    batch: list[tuple[str, np.ndarray]] = []
    d: int | None = None

    def emit(item: tuple[str, np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batch.append(item)
        if len(batch) == batch_size:
            yield _collate(batch, ts.targets)
            batch.clear()

    for url in files:
        for image, bag in _bags_of_file(url, ts.targets):
            if d is None:
                d = len(bag)
            elif len(bag) != d:
                raise DataError(f"{url}: image {image} has {len(bag)} masks, others {d}: "
                                "train on embeddings made with one embed.points_per_side")
            buffer.append((image, bag))
            if len(buffer) >= shuffle_buffer:
                yield from emit(buffer.pop(rng.randrange(len(buffer))))
    rng.shuffle(buffer)
    for item in buffer:
        yield from emit(item)
    if batch:
        yield _collate(batch, ts.targets)


def _collate(items: list[tuple[str, np.ndarray]],
             targets: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    bags = torch.from_numpy(np.stack([bag for _, bag in items]))
    return bags, torch.from_numpy(np.stack([targets[image] for image, _ in items]))
