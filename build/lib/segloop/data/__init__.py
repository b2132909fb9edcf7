"""Data layer: datasets over fsspec, class specs, image ids, RLE masks, the Parquet store.

Modules: ``fs`` (URLs), ``classes`` (class specs), ``ids`` (content-derived image ids),
``rle`` (COCO RLE), ``images`` (image/label I/O with checks), ``datasets`` (CamVid layout and
image folders), ``camvid`` (finding/downloading CamVid), ``schemas`` (every table schema) and
``parquet`` (atomic streaming writer, readers).
"""
