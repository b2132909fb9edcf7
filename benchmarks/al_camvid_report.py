"""The CamVid active-learning benchmark's results: JSON store, summary, plot, tables.

Used by ``al_camvid.py``; run that script with ``--table`` or ``--plot-only`` to redraw.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

HEADLINE = ("random", "entropy", "margin", "uig", "bald", "badge", "typiclust")


class Results:
    """Points saved to the JSON as soon as they exist (so the benchmark runs in parts)."""

    def __init__(self, path: Path, protocol: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"protocol": protocol, "points": [], "full": []}
        if path.is_file():
            old = json.loads(path.read_text())
            if old.get("protocol") == protocol:
                self.data.update({k: old.get(k, []) for k in ("points", "full")})
            else:
                print(f"{path}: protocol changed, starting afresh", file=sys.stderr)

    def has(self, kind: str, **key: Any) -> bool:
        return any(all(p.get(k) == v for k, v in key.items()) for p in self.data[kind])

    def add(self, kind: str, item: dict[str, Any]) -> None:
        self.data[kind].append(item)
        self.save()

    def save(self) -> None:
        self.data.update(summarize(self.data))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """Means and spreads per (level, recipe, budget), ``to95`` and the timing summary."""
    steps = data["protocol"].get("steps")
    full = [f["miou"] for f in data["full"] if f.get("steps", steps) == steps]
    full_miou = statistics.mean(full) if full else None
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for p in data["points"]:
        groups.setdefault((p["level"], p["strategy"], p["budget_fraction"]), []).append(p)
    curves = []
    for (level, strategy, b), pts in sorted(groups.items()):
        vals = [p["miou"] for p in pts]
        frac = [p["image_fraction" if level == "image" else "pixel_fraction"] for p in pts]
        curves.append({
            "strategy": strategy, "level": level, "budget_fraction": b,
            "pixel_fraction": statistics.mean(p["pixel_fraction"] for p in pts),
            "image_fraction": statistics.mean(p["image_fraction"] for p in pts),
            "labelled_fraction": statistics.mean(frac),
            "miou_mean": statistics.mean(vals), "miou_std": _std(vals),
            "seeds": sorted(p["seed"] for p in pts),
            "per_seed": {str(p["seed"]): p["miou"] for p in sorted(pts, key=lambda p: p["seed"])},
            "relative_to_full": statistics.mean(vals) / full_miou if full_miou else None,
            "train_seconds_mean": statistics.mean(p["train_seconds"] for p in pts),
            "score_seconds_mean": _mean_or_none([p.get("score_seconds") for p in pts]),
            # labelled pool images filmed within 10 s of the evaluation clip
            "images_near_eval_mean": _mean_or_none([p.get("images_near_eval") for p in pts]),
        })
    curve = sorted(({"steps": f["steps"], "miou": f["miou"]} for f in data["full"]
                    if f["seed"] == min(x["seed"] for x in data["full"])),
                   key=lambda f: f["steps"]) if data["full"] else []
    # The strict reference: the same-schedule mean, or the best the longer runs of the
    # convergence curve reached, whichever is higher ("95% of full" is never flattered by
    # an undertrained reference).
    reference = max([v for v in [full_miou, *(c["miou"] for c in curve)] if v is not None],
                    default=None)
    for c in curves:
        c["relative_to_reference"] = c["miou_mean"] / reference if reference else None
    to95: dict[str, float | None] = {}
    for c in curves:
        key = f"{c['level']}/{c['strategy']}"
        to95.setdefault(key, None)
        if reference and c["miou_mean"] >= 0.95 * reference and (
                to95[key] is None or c["labelled_fraction"] < to95[key]):
            to95[key] = c["labelled_fraction"]
    scoring = [c["score_seconds_mean"] / c["train_seconds_mean"] for c in curves
               if c["score_seconds_mean"] is not None and c["train_seconds_mean"] > 0]
    return {"full_miou": full_miou, "full_miou_std": _std(full), "reference_miou": reference,
            "full_per_seed": {str(f["seed"]): f["miou"] for f in data["full"]
                              if f.get("steps", steps) == steps},
            "full_curve": curve, "curves": curves, "to95": to95,
            "scoring_vs_training_max": max(scoring) if scoring else None}


def _mean_or_none(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else None


def plot(data: dict[str, Any], path: Path) -> None:
    """Image and region curves (mean +- std over seeds) and the reference's convergence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), constrained_layout=True,
                             gridspec_kw={"width_ratios": [2, 2, 1.2]})
    for ax, level, xlabel in ((axes[0], "image", "labelled images (% of pool)"),
                              (axes[1], "region", "labelled pixels (% of pool)")):
        names = sorted({c["strategy"] for c in data["curves"] if c["level"] == level},
                       key=lambda s: (s.startswith("abl/"), s))
        for strategy in names:
            cs = [c for c in data["curves"] if c["level"] == level and c["strategy"] == strategy]
            x = np.array([100 * c["labelled_fraction"] for c in cs])
            y = np.array([c["miou_mean"] for c in cs])
            s = np.array([c["miou_std"] for c in cs])
            style = {"ls": ":", "alpha": 0.7} if strategy.startswith("abl/") else {}
            ax.plot(x, y, marker="o", label=strategy, **style)
            if not strategy.startswith("abl/"):
                ax.fill_between(x, y - s, y + s, alpha=0.15)
        if data.get("reference_miou"):
            ax.axhline(data["reference_miou"], color="k", lw=1, label="full supervision")
            ax.axhline(0.95 * data["reference_miou"], color="k", lw=1, ls="--",
                       label="95% of full")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        budgets = data["protocol"].get(f"{level}_budgets") or sorted(
            {c["budget_fraction"] for c in data["curves"] if c["level"] == level})
        ax.set_xticks([100 * b for b in budgets])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("val mIoU")
        ax.set_title(f"{level} level")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    curve = data.get("full_curve") or []
    if curve:
        axes[2].plot([c["steps"] for c in curve], [c["miou"] for c in curve], marker="o")
    axes[2].set_xlabel("training steps (full supervision, seed 0)")
    axes[2].set_ylabel("val mIoU")
    axes[2].set_title("reference convergence")
    axes[2].grid(alpha=0.3)
    fig.suptitle("segloop active learning on CamVid (96x128, LR-ASPP from scratch, "
                 "mean +- std over seeds)")
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def markdown_table(data: dict[str, Any]) -> str:
    """mIoU mean +- std (and % of full supervision) per level, recipe and budget."""
    full = data.get("full_miou")
    steps = data["protocol"].get("steps")
    lines = [f"Full supervision (same model, {steps} steps): "
             + (f"{full:.4f} +- {data['full_miou_std']:.4f} mIoU over "
                f"{len(data['full_per_seed'])} seed(s)" if full else "not run yet")]
    if data.get("full_curve"):
        lines.append("Convergence (seed 0): " + ", ".join(
            f"{c['steps']} steps {c['miou']:.4f}" for c in data["full_curve"]))
    if data.get("reference_miou"):
        lines.append(f"Reference for '% of full' and 'to 95%': {data['reference_miou']:.4f} "
                     "(the higher of the same-schedule mean and the convergence curve's best)")
    lines.append("")
    for level, unit in (("image", "images"), ("region", "pixels")):
        cs = [c for c in data["curves"] if c["level"] == level]
        if not cs:
            continue
        budgets = sorted({c["budget_fraction"] for c in cs})
        lines.append(f"| {level} level: % of {unit} | "
                     + " | ".join(f"{100 * b:g}%" for b in budgets) + " | to 95% of full |")
        lines.append("|---" * (len(budgets) + 2) + "|")
        names = sorted({c["strategy"] for c in cs},
                       key=lambda s: (s.startswith("abl/"), HEADLINE.index(s)
                                      if s in HEADLINE else 99, s))
        for strategy in names:
            row = {c["budget_fraction"]: c for c in cs if c["strategy"] == strategy}
            cells = []
            for b in budgets:
                c = row.get(b)
                if c is None:
                    cells.append("-")
                    continue
                rel = (f" ({100 * c['relative_to_reference']:.0f}%)"
                       if c.get("relative_to_reference") else "")
                near = c.get("images_near_eval_mean")
                near_s = "" if near is None or level != "image" else f", {near:g} near val"
                cells.append(f"{c['miou_mean']:.3f} +- {c['miou_std']:.3f}{rel}{near_s}")
            reach = data["to95"].get(f"{level}/{strategy}")
            cells.append("-" if reach is None else f"{100 * reach:.1f}%")
            n = max(len(c["seeds"]) for c in row.values())
            lines.append(f"| {strategy} (n={n}) | " + " | ".join(cells) + " |")
        lines.append("")
    worst = data.get("scoring_vs_training_max")
    if worst is not None:
        lines.append(f"Scoring plus selection vs one training round: at most {worst:.3f}x.")
    return "\n".join(lines)
