"""Matching finished labels back to the pending selection, and the errors that say what
does not belong (unknown image, wrong size, other classes, another selection's digest)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from typing import Any

from segloop.data.classes import ClassSpec
from segloop.errors import ConfigError, DataError
from segloop.labeling.pending import TO_LABEL, ImageEntry, PendingSelection
from segloop.labeling.selection_file import selection_digest

_LS_UPLOAD = re.compile(r"^[0-9a-f]{8}-(.+)$")
"""Label Studio's upload names: an 8-hex prefix, a dash, the original name."""


class ImageMatcher:
    """Maps what a labelling tool calls an image back to a selected image id.

    Tried in order: the segloop image id, the exact image URI, then the URI's file name,
    the unit's name and its stem; keys shared by two images are ambiguous and skipped.
    """

    def __init__(self, sel: PendingSelection) -> None:
        self.sel = sel
        self._exact: dict[str, str] = {}
        loose: dict[str, set[str]] = {}
        for entry in sel.images.values():
            self._exact[entry.image_id] = entry.image_id
            for key in _loose_keys(entry):
                loose.setdefault(key, set()).add(entry.image_id)
        uris: dict[str, set[str]] = {}
        for entry in sel.images.values():
            uris.setdefault(entry.image_uri, set()).add(entry.image_id)
        self._uri = {k: next(iter(v)) for k, v in uris.items() if len(v) == 1}
        self._loose = {k: next(iter(v)) for k, v in loose.items() if len(v) == 1}

    def match(self, image_id: str | None, refs: Iterable[str | None]) -> str | None:
        """The selected image id for a tool's image, or None if none matches."""
        if image_id is not None:
            return self._exact.get(str(image_id))
        refs = [str(r) for r in refs if r]
        for ref in refs:
            if ref in self._uri:
                return self._uri[ref]
        for ref in refs:
            base = posixpath.basename(ref.replace("\\", "/"))
            # Label Studio renames uploads to "<8 hex>-<original name>".
            upload = _LS_UPLOAD.match(base)
            for b in (base, upload.group(1) if upload else None):
                for key in (b, posixpath.splitext(b)[0]) if b else ():
                    if key in self._loose:
                        return self._loose[key]
        return None


def _loose_keys(entry: ImageEntry) -> set[str]:
    base = posixpath.basename(entry.image_uri.replace("\\", "/"))
    name = entry.name
    return {base, posixpath.splitext(base)[0], name, posixpath.splitext(name)[0],
            entry.image_id}


def short_list(items: Sequence[Any], limit: int = 5) -> str:
    """``a, b, c and 4 more`` for messages."""
    shown = ", ".join(repr(i) if isinstance(i, str) else str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# -- checks shared by the readers ----------------------------------------------------------

def check_classes(sel: PendingSelection, classes: ClassSpec) -> None:
    """Refuse a class spec that is not the one the round was exported with."""
    if tuple(classes.names) != sel.classes or classes.ignore_index != sel.ignore_index:
        raise ConfigError(
            f"round {sel.round} was exported with classes {list(sel.classes)} (ignore id "
            f"{sel.ignore_index}) but the class spec given is {list(classes.names)} (ignore id "
            f"{classes.ignore_index}); import with the round's class spec (data.classes)"
        )
    if TO_LABEL in classes.names:
        raise ConfigError(
            f"a class is named {TO_LABEL!r}, the placeholder segloop's task files use for "
            "units still to label; rename that class"
        )


def check_file_digest(found: Any, sel: PendingSelection, where: str, image: str = "",
                      found_round: Any = None) -> None:
    """Refuse a task file whose recorded selection digest is not ``sel``'s (if it has one);
    ``found_round`` (the round the file says it was exported for) names the likely cause."""
    if found is None:
        return
    expected = selection_digest(sel)
    if found != expected:
        about = f" (image {image!r})" if image else ""
        if isinstance(found_round, int) and found_round != sel.round:
            raise DataError(
                f"{where}{about}: this is round {found_round}'s file, but round {sel.round} "
                f"is the one waiting for labels; import the file exported for round "
                f"{sel.round} (`segloop labels export --out DIR` writes its tasks again)")
        raise DataError(
            f"{where}{about}: the file was exported for selection digest {str(found)[:12]}... "
            f"but round {sel.round}'s selection.json has {expected[:12]}...; the labels belong "
            "to another round or the file's segloop fields were edited: import the file "
            "exported for this round, or re-export the round and label again"
        )


def not_in_selection(where: str, ref: Any, sel: PendingSelection) -> DataError:
    return DataError(
        f"{where}: image {ref!r} is not in round {sel.round}'s selection "
        f"({len(sel.images)} images); remove it from the file, or import it with the round "
        "it was exported for"
    )


def wrong_size(where: str, image_id: str, got: tuple[int, int], sel: PendingSelection) -> DataError:
    e = sel.images[image_id]
    return DataError(
        f"{where}: image {image_id!r} ({e.name}) is labelled at {got[0]}x{got[1]} (HxW) but the "
        f"selection has it at {e.height}x{e.width}; label the original image (do not resize "
        "it in the tool) and export again"
    )
