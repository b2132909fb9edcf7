"""Label Studio tasks for a round, its brush RLE, and reading its JSON export back.

Brush RLE format
----------------
Label Studio stores a ``BrushLabels`` region (``value.format == "rle"``) as a list of
byte values (0..255) holding a bit stream, most significant bit first. It encodes the
region's RGBA canvas flattened row-major: ``H * W * 4`` values (R, G, B, A of pixel
(0, 0), then pixel (0, 1), ...); a pixel belongs to the region when its alpha is > 0.
This is the format of ``@thi.ng/rle-pack`` that the Label Studio frontend and
label-studio-converter's ``brush.encode_rle/decode_rle`` use:

* header: 32 bits ``num`` (number of values), 5 bits ``word_size - 1``, then four
  times 4 bits ``rle_size - 1`` (the four run-length field widths; default 3, 4, 8, 16);
* records until ``num`` values are produced, each: 1 bit ``repeat``, 2 bits ``k``
  choosing a width ``rle_sizes[k]``, ``rle_sizes[k]`` bits ``count - 1``, then

  - repeat = 1: one ``word_size``-bit word, repeated ``count`` times;
  - repeat = 0: ``count`` literal ``word_size``-bit words;

* zero bits pad the stream to whole bytes (decoders ignore anything after ``num``).

:func:`encode_rle` writes runs of equal values as repeat records (split into pieces of
at most ``2 ** max(rle_sizes)``) and lone values as one-word literal records, each with
the narrowest count field that fits; for masks this gives the same bits as
label-studio-converter's encoder (which pads one more zero byte when the stream is
already byte-aligned). :func:`decode_rle` reads any valid stream.

Tasks
-----
:func:`export_labelstudio` writes one task per image whose prediction holds one
``"to-label"`` brush region per unit; the person selects each region and gives it its
class (the labelling interface is :func:`labeling_config`). Label Studio's JSON export
(a list of tasks with ``annotations``) is read by :func:`read_labelstudio_labels`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np

from segloop.data.classes import ClassSpec
from segloop.errors import ConfigError, DataError
from segloop.labeling.checks import (
    ImageMatcher,
    check_classes,
    check_file_digest,
    not_in_selection,
    wrong_size,
)
from segloop.labeling.pending import TO_LABEL, PendingSelection
from segloop.labeling.selection_file import dump_json, load_json, selection_digest

FROM_NAME = "tag"
TO_NAME = "image"
TO_LABEL_COLOR = "#ff00ff"
DEFAULT_RLE_SIZES = (3, 4, 8, 16)
_WEIGHTS = np.left_shift(np.int64(1), np.arange(31, -1, -1, dtype=np.int64))  # 2**31 .. 1


# -- brush RLE ---------------------------------------------------------------------------


def encode_rle(
    values: np.ndarray, word_size: int = 8, rle_sizes: Sequence[int] = DEFAULT_RLE_SIZES
) -> list[int]:
    """Encode a 1-D array of non-negative ints (< 2**word_size) as Label Studio brush RLE."""
    arr = np.asarray(values).ravel()
    sizes = [int(s) for s in rle_sizes]
    if not 1 <= word_size <= 32 or len(sizes) != 4 or not all(1 <= s <= 16 for s in sizes):
        raise DataError(f"brush RLE needs 1 <= word_size <= 32 and four rle_sizes in 1..16, got "
                        f"{word_size} and {sizes}")
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0
                     or int(arr.max()) >= 2**word_size):
        raise DataError(f"brush RLE values must be ints in 0..{2**word_size - 1}, got dtype "
                        f"{arr.dtype}")
    if arr.size >= 2**32:
        raise DataError(f"brush RLE holds at most 2**32 - 1 values, got {arr.size}")
    arr = arr.astype(np.int64)
    change = np.flatnonzero(arr[1:] != arr[:-1]) + 1
    starts = np.concatenate([[0], change]) if arr.size else np.zeros(0, np.int64)
    lengths = np.diff(np.concatenate([starts, [arr.size]]))
    run_values = arr[starts]
    # Split runs longer than the widest count field into pieces.
    widest = 2 ** max(sizes)
    pieces = -(-lengths // widest)
    counts = np.full(int(pieces.sum()), widest, dtype=np.int64)
    last = np.cumsum(pieces) - 1
    counts[last] = lengths - (pieces - 1) * widest
    words = np.repeat(run_values, pieces)
    repeat = (np.repeat(lengths, pieces) > 1).astype(np.int64)
    # Narrowest count field that fits count - 1.
    order = np.argsort(sizes, kind="stable")
    caps = np.array([2 ** sizes[k] for k in order])
    kind = order[np.searchsorted(caps, counts, side="left")]
    field_values = np.stack(
        [repeat, kind, counts - 1, words], axis=1
    ).ravel() if counts.size else np.zeros(0, np.int64)
    field_widths = np.stack(
        [np.ones_like(kind), np.full_like(kind, 2), np.asarray(sizes)[kind],
         np.full_like(kind, word_size)], axis=1
    ).ravel() if counts.size else np.zeros(0, np.int64)
    header_values = [arr.size, word_size - 1] + [s - 1 for s in sizes]
    header_widths = [32, 5, 4, 4, 4, 4]
    all_values = np.concatenate([np.asarray(header_values, np.int64), field_values])
    all_widths = np.concatenate([np.asarray(header_widths, np.int64), field_widths])
    return _pack_fields(all_values, all_widths)


def _pack_fields(values: np.ndarray, widths: np.ndarray) -> list[int]:
    """Concatenate ``values[i]`` written MSB-first on ``widths[i]`` bits; pad to bytes."""
    total = int(widths.sum())
    field = np.repeat(np.arange(widths.size), widths)
    first_bit = np.concatenate([[0], np.cumsum(widths)[:-1]])
    shift = widths[field] - 1 - (np.arange(total) - first_bit[field])
    bits = ((values[field] >> shift) & 1).astype(np.uint8)
    return np.packbits(bits).tolist()


def decode_rle(data: Sequence[int] | bytes | np.ndarray,
               expected: int | None = None) -> np.ndarray:
    """Decode Label Studio brush RLE to its 1-D values (uint8/16/32 by word size).

    ``expected``: the number of values the caller needs (H x W x 4 for a mask); a stream
    that declares another count is refused before anything is allocated."""
    raw = np.asarray(list(data) if isinstance(data, bytes | bytearray) else data)
    if raw.ndim != 1 or (raw.size and (not np.issubdtype(raw.dtype, np.integer)
                                        or raw.min() < 0 or raw.max() > 255)):
        raise DataError("brush RLE must be a flat list of byte values 0..255; take "
                        "value.rle of a brushlabels result as it is")
    bits = np.unpackbits(raw.astype(np.uint8)).astype(np.int64)
    reader = _BitReader(bits)
    num = reader.read(32)
    word_size = reader.read(5) + 1
    sizes = [reader.read(4) + 1 for _ in range(4)]
    dtype = np.uint8 if word_size <= 8 else np.uint16 if word_size <= 16 else np.uint32
    if expected is not None and num != expected:
        raise DataError(f"brush RLE holds {num} values but {expected} were expected (an "
                        "RGBA canvas of the task's image); the mask belongs to another image "
                        "size or the data is corrupt")
    if num > (bits.size // 4 + 1) * 2 ** max(sizes):  # more than the stream can hold
        raise DataError(f"brush RLE claims {num} values, far more than its {raw.size} bytes "
                        "can encode; the data is corrupt")
    out = np.zeros(num, dtype=dtype)
    i = 0
    while i < num:
        repeat = reader.read(1)
        j = i + 1 + reader.read(sizes[reader.read(2)])
        if j > num:
            raise DataError(f"brush RLE run ends at value {j} past its declared length {num}; "
                            "the data is corrupt")
        if repeat:
            out[i:j] = reader.read(word_size)
        else:
            out[i:j] = reader.read_words(j - i, word_size)
        i = j
    return out


class _BitReader:
    def __init__(self, bits: np.ndarray) -> None:
        self.bits = bits
        self.pos = 0

    def _take(self, n: int) -> np.ndarray:
        if self.pos + n > self.bits.size:
            raise DataError("brush RLE ends in the middle of a record; the data is truncated")
        out = self.bits[self.pos:self.pos + n]
        self.pos += n
        return out

    def read(self, n: int) -> int:
        return int(self._take(n) @ _WEIGHTS[32 - n:])

    def read_words(self, count: int, word_size: int) -> np.ndarray:
        return self._take(count * word_size).reshape(count, word_size) @ _WEIGHTS[32 - word_size:]


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """(H, W) bool mask -> brush RLE of its RGBA canvas (255 in all channels inside)."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise DataError(f"a brush mask must be (H, W), got shape {arr.shape}")
    return encode_rle(np.repeat(arr.astype(bool).ravel().astype(np.uint8) * 255, 4))


def rle_to_mask(data: Sequence[int], height: int, width: int) -> np.ndarray:
    """Brush RLE -> (height, width) bool mask (alpha > 0)."""
    try:
        values = decode_rle(data, expected=height * width * 4)
    except DataError as e:
        raise DataError(f"{e} ({height}x{width} image)") from None
    return values.reshape(height, width, 4)[:, :, 3] > 0


# -- tasks ---------------------------------------------------------------------------------


def labeling_config(classes: ClassSpec) -> str:
    """The Label Studio labelling interface (XML): the image and one brush label per class.

    Besides the classes it holds the placeholder label ``"to-label"`` the exported regions
    carry; region and tag names match :func:`export_labelstudio` (``tag`` -> ``image``).
    """
    if TO_LABEL in classes.names:
        raise ConfigError(f"a class is named {TO_LABEL!r}, the placeholder of units still to "
                          "label; rename that class")
    palette = classes.colors
    lines = [
        "<View>",
        '  <Header value="Select each magenta to-label region and give it its class; '
        'do not paint outside the regions."/>',
        f'  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>',
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">',
        f"    <Label value={quoteattr(TO_LABEL)} background={quoteattr(TO_LABEL_COLOR)}/>",
    ]
    for info in sorted(classes.classes, key=lambda c: c.id):
        r, g, b = (int(v) for v in palette[info.id])
        lines.append(f"    <Label value={quoteattr(info.name)} "
                     f"background={quoteattr(f'#{r:02x}{g:02x}{b:02x}')}/>")
    lines += ["  </BrushLabels>", "</View>", ""]
    return "\n".join(lines)


def local_files_url(image: str, document_root: str | Path) -> str:
    """Label Studio's Local Storage URL of a local image: ``/data/local-files/?d=<path>``,
    the path relative to ``document_root`` (LOCAL_FILES_DOCUMENT_ROOT), symlinks resolved
    (Label Studio refuses to follow them)."""
    if "://" in image and not image.startswith("file://"):
        raise ConfigError(f"image {image} is not a local file: Label Studio's local-files "
                          "URLs serve local images only; use active.labelstudio_images: path "
                          "with a cloud storage connected in Label Studio")
    root = Path(document_root).expanduser().resolve()
    path = Path(image.removeprefix("file://")).expanduser().resolve()
    if not path.is_relative_to(root):
        raise ConfigError(f"image {path} is not under active.labelstudio_document_root "
                          f"{root}: set it to a folder that holds the images (and start "
                          "Label Studio with LOCAL_FILES_DOCUMENT_ROOT set to the same)")
    return "/data/local-files/?d=" + quote(path.relative_to(root).as_posix())


def export_labelstudio(sel: PendingSelection, out_path: str | Path,
                       image_url: Callable[[str], str] | None = None) -> Path:
    """Write the Label Studio import JSON: one task per image, one 'to-label' region per unit.

    ``image_url`` maps an image's URI to the URL the task shows (default: the URI as is;
    :func:`local_files_url` for Label Studio's Local Storage)."""
    if not sel.units:
        raise DataError(f"round {sel.round} selected nothing; there is nothing to export")
    if TO_LABEL in sel.classes:
        raise ConfigError(f"a class is named {TO_LABEL!r}; rename it before exporting")
    digest = selection_digest(sel)
    tasks = []
    for entry in sel.images.values():
        result = [{
            "id": f"r{unit.region_id}", "type": "brushlabels", "from_name": FROM_NAME,
            "to_name": TO_NAME, "original_width": entry.width, "original_height": entry.height,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": mask_to_rle(unit.pixel_mask()),
                      "brushlabels": [TO_LABEL]},
        } for unit in sel.units_of(entry.image_id)]
        tasks.append({
            "data": {"image": image_url(entry.image_uri) if image_url else entry.image_uri,
                     "segloop_image_id": entry.image_id,
                     "segloop_round": sel.round, "segloop_digest": digest},
            "predictions": [{"model_version": f"segloop-round-{sel.round:03d}",
                             "result": result}],
        })
    dump_json(out_path, tasks)
    return Path(out_path)


def read_labelstudio_labels(
    path: str | Path, sel: PendingSelection, classes: ClassSpec
) -> dict[str, np.ndarray]:
    """Paint Label Studio's JSON export into label maps: image id -> (H, W) uint8.

    Per task the latest non-cancelled annotation wins (by ``updated_at``/``created_at``,
    then ``id``); its brush regions paint in order, later over earlier, and regions still
    labelled ``"to-label"`` stay ``ignore_index``. Only tasks in the file are returned;
    tasks exported for earlier rounds are skipped (:func:`earlier_round_tasks`).
    """
    url = str(path)
    return labelstudio_labels_from_doc(load_json(url, "Label Studio export"), url, sel, classes)


def labelstudio_labels_from_doc(
    doc: Any, where: str, sel: PendingSelection, spec: ClassSpec
) -> dict[str, np.ndarray]:
    """:func:`read_labelstudio_labels` on an already parsed document."""
    check_classes(sel, spec)
    if not isinstance(doc, list) or not all(isinstance(t, dict) and isinstance(t.get("data"),
                                                                                dict)
                                            for t in doc):
        raise DataError(f"{where} is not a Label Studio JSON export (a list of tasks with "
                        "'data'); export the project as 'JSON' (not JSON-MIN or CSV)")
    matcher = ImageMatcher(sel)
    labels: dict[str, np.ndarray] = {}
    task_of: dict[str, Any] = {}
    for task in doc:
        data = task["data"]
        if _earlier_round(data, sel):
            continue  # one project over many rounds: its export holds committed rounds too
        ref = data.get("segloop_image_id") or data.get("image")
        check_file_digest(data.get("segloop_digest"), sel, where, image=str(ref),
                          found_round=data.get("segloop_round"))
        if data.get("segloop_digest") is None and data.get("segloop_round") not in (None,
                                                                                  sel.round):
            raise DataError(f"{where}: task {task.get('id')} (image {ref!r}) was exported for "
                            f"round {data['segloop_round']}, not round {sel.round}; import "
                            "the file of this round")
        sid = matcher.match(data.get("segloop_image_id"), [data.get("image")])
        if sid is None:
            raise not_in_selection(f"{where}: task {task.get('id')}", ref, sel)
        if sid in labels:
            raise DataError(f"{where}: image {sid!r} appears in two tasks ({task_of[sid]} and "
                            f"{task.get('id')}); delete the duplicate task and export again")
        entry = sel.images[sid]
        label = np.full((entry.height, entry.width), spec.ignore_index, dtype=np.uint8)
        ann = _latest_annotation(task.get("annotations"))
        for result in (ann or {}).get("result") or []:
            _paint(result, label, spec, f"{where}: task {task.get('id')}", sel, sid)
        labels[sid] = label
        task_of[sid] = task.get("id")
    return labels


def _earlier_round(data: dict[str, Any], sel: PendingSelection) -> bool:
    found = data.get("segloop_round")
    return isinstance(found, int) and not isinstance(found, bool) and found < sel.round


def earlier_round_tasks(doc: Any, sel: PendingSelection) -> int:
    """Tasks of an export that segloop exported for rounds before ``sel``'s: skipped on
    import (a Label Studio project kept over many rounds exports them all)."""
    return sum(1 for t in doc if isinstance(t, dict) and isinstance(t.get("data"), dict)
               and _earlier_round(t["data"], sel)) if isinstance(doc, list) else 0


def labelstudio_task_ids(doc: Any, sel: PendingSelection) -> dict[str, str]:
    """Image id -> "Label Studio task <id>" for the tasks of an export (for messages)."""
    matcher = ImageMatcher(sel)
    out = {}
    for task in doc if isinstance(doc, list) else []:
        data = task.get("data") if isinstance(task, dict) else None
        if isinstance(data, dict) and task.get("id") is not None:
            sid = matcher.match(data.get("segloop_image_id"), [data.get("image")])
            if sid is not None:
                out[sid] = f"Label Studio task {task['id']}"
    return out


def _latest_annotation(annotations: Any) -> dict[str, Any] | None:
    if not isinstance(annotations, list):
        return None
    live = [(k, a) for k, a in enumerate(annotations)
            if isinstance(a, dict) and not a.get("was_cancelled")]
    if not live:
        return None

    def key(item: tuple[int, dict[str, Any]]) -> tuple[str, int, int]:
        k, a = item
        stamp = a.get("updated_at") or a.get("created_at") or ""
        ident = a.get("id") if isinstance(a.get("id"), int) else -1
        return str(stamp), ident, k

    return max(live, key=key)[1]


def _paint(result: Any, label: np.ndarray, spec: ClassSpec, where: str,
           sel: PendingSelection, sid: str) -> None:
    if not isinstance(result, dict):
        raise DataError(f"{where}: a result is not an object: {str(result)[:60]}")
    rtype = str(result.get("type", "")).lower()
    value = result.get("value") if isinstance(result.get("value"), dict) else {}
    if rtype != "brushlabels" and "brushlabels" not in value:
        if rtype.endswith("labels"):
            raise DataError(f"{where} (image {sid!r}): a {rtype} region cannot be imported; "
                            "label with brush regions only (use segloop's labeling_config)")
        return  # choices, text areas, relations: not pixels
    names = value.get("brushlabels") or []
    if not names or list(names) == [TO_LABEL]:
        return
    if len(names) != 1:
        raise DataError(f"{where} (image {sid!r}): region {result.get('id')} carries several "
                        f"labels {names}; give each region exactly one class")
    name = names[0]
    if name not in spec.names:
        raise DataError(f"{where} (image {sid!r}): region {result.get('id')} is labelled "
                        f"{name!r}, not a class of the spec {list(spec.names)}; relabel it or "
                        "add the class to data.classes and re-export the round")
    h, w = label.shape
    got = (result.get("original_height", h), result.get("original_width", w))
    if got != (h, w):
        raise wrong_size(where, sid, got, sel)
    if value.get("format", "rle") != "rle":
        raise DataError(f"{where} (image {sid!r}): brush format {value.get('format')!r} is not "
                        "supported; export with Label Studio's default 'rle' brush format")
    data = value.get("rle", result.get("rle"))
    if data is None:
        raise DataError(f"{where} (image {sid!r}): region {result.get('id')} has no rle data")
    try:
        mask = rle_to_mask(data, h, w)
    except DataError as err:
        raise DataError(f"{where} (image {sid!r}), region {result.get('id')}: {err}") from err
    label[mask] = spec.names.index(name)
