"""What a person looks at after a run: the rounds table, a markdown summary and the curve of
mIoU against the labelled fraction (PNG), plus the DVC metrics/plots files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segloop.data.images import write_bytes_atomic
from segloop.versioning import RoundInfo

COLUMNS = ("round", "labelled_images", "image_fraction", "labelled_pixels", "pixel_fraction",
           "clicks", "miou")


def rounds_table(rounds: Sequence[RoundInfo], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per round that has metrics: labelled %, pixels, mIoU and per-class IoU."""
    rows = []
    for r in rounds:
        m = r.metrics or {}
        if "miou" not in m:
            continue
        row = {k: m.get(k) for k in COLUMNS}
        row["round"] = r.number
        if m.get("random_miou") is not None:
            row["random_miou"] = m["random_miou"]
        row["tag"] = r.tag
        iou = m.get("iou") or {}
        row.update({f"iou_{c}": iou.get(c) for c in class_names})
        rows.append(row)
    return rows


def markdown_summary(rows: Sequence[dict[str, Any]], title: str, plot: Path | None,
                     links: dict[str, str | None] | None = None) -> str:
    """The Prefect summary artifact; ``links`` (name -> URL, None left out) to the same
    run in other dashboards (MLflow, FiftyOne)."""
    shown = {k: v for k, v in (links or {}).items() if v}
    more = "".join(f"- {k}: [{v}]({v})\n" for k, v in shown.items())
    more = f"\nOpen in: \n{more}" if more else ""
    if not rows:
        return f"# {title}\n\nNo round has metrics yet.\n{more}"
    head = "| round | images | % images | % pixels | clicks | mIoU |\n|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['round']} | {r['labelled_images']} | {100 * r['image_fraction']:.1f} | "
        f"{100 * r['pixel_fraction']:.2f} | {r['clicks']} | {r['miou']:.4f} |\n" for r in rows)
    last = rows[-1]
    text = (f"# {title}\n\nAfter round {last['round']}: mIoU {last['miou']:.4f} with "
            f"{100 * last['pixel_fraction']:.2f}% of the pool's pixels labelled "
            f"({last['labelled_images']} images touched).\n\n{head}{body}")
    compared = [r for r in rows if r.get("random_miou") is not None]
    if compared:
        c = compared[-1]
        text += (f"\nRandom selection at the same budget as round {c['round']}: mIoU "
                 f"{c['random_miou']:.4f}; this loop: {c['miou']:.4f} "
                 f"({c['miou'] - c['random_miou']:+.4f}).\n")
    if plot is not None:
        text += f"\nCurve: `{plot}`\n"
    return text + more


def plot_curve(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """mIoU against the labelled fraction of pixels (and of images), one point per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, key, label in ((axes[0], "pixel_fraction", "labelled pixels (% of pool)"),
                           (axes[1], "image_fraction", "images touched (% of pool)")):
        xs = [100 * r[key] for r in rows]
        ax.plot(xs, [r["miou"] for r in rows], marker="o", label="this loop")
        rand = [(x, r["random_miou"]) for r, x in zip(rows, xs, strict=True)
                if r.get("random_miou") is not None]
        if rand:
            ax.plot(*zip(*rand, strict=True), marker="x", ls="", ms=9, color="C3",
                    label="random selection, same budget")
            ax.legend(fontsize=8)
        for r, x in zip(rows, xs, strict=True):
            ax.annotate(f"r{r['round']}", (x, r["miou"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("val mIoU")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _atomic_savefig(fig, path)
    plt.close(fig)
    return path


def selection_preview_path(cfg: Any, n: int) -> Path:
    """Where round ``n``'s selection preview goes: ``<reports>/active_learning/selections/
    round_NNN.png``."""
    return Path(cfg.base.paths.reports) / "active_learning" / "selections" / f"round_{n:03d}.png"


def write_reports(rows: Sequence[dict[str, Any]], out_dir: Path, title: str) -> dict[str, Path]:
    """``metrics.json`` (the last round: DVC metrics), ``rounds.csv`` (DVC plots) and the PNG."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out_dir / "metrics.json", "rounds": out_dir / "rounds.csv",
             "plot": out_dir / "miou_vs_labelled.png"}
    last = dict(rows[-1]) if rows else {}
    _atomic_text(paths["metrics"], json.dumps(last, indent=2, default=str) + "\n")
    buf = io.StringIO(newline="")
    fields = list(dict.fromkeys(k for row in rows for k in row)) or list(COLUMNS)
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(str(paths["rounds"]), buf.getvalue().encode())
    if rows:
        plot_curve(rows, paths["plot"], title)
    return paths


def _atomic_text(path: Path, text: str) -> None:
    write_bytes_atomic(str(path), text.encode())


def _atomic_savefig(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format=path.suffix.lstrip(".") or "png")
    write_bytes_atomic(str(path), buf.getvalue())
