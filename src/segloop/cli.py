"""The ``segloop`` command: config, runs, label rounds and data, over the library.

    segloop config show [PATH]          print the full config (defaults filled in)
    segloop config show --defaults      print the built-in defaults (params.yaml)
    segloop config validate PATH...     check config files; exit 2 on the first bad one
    segloop run FLOW [--pipeline P]     run a flow (smoke, active_learning, embed,
                                        synthesize, pseudolabel, usam) on Prefect's
                                        local server
    segloop labels export [--out DIR]   write the pending round's labelling tasks
    segloop labels import FILE          validate finished labels and commit the pending round
    segloop rounds list [--pipeline P]  label rounds with tag, date, size, metrics
    segloop rounds checkout N [...]     restore round N's files exactly
    segloop rounds retract N [...]      undo the latest round (history kept)
                                        (--seeds METHOD: pseudo-label rounds, e.g.
                                        usam, maskdiffusion-g4seg)
    segloop data locate [--pipeline P]  find (or download once) the configured dataset
    segloop models promote N [...]      register round N's MLflow model (alias champion)
    segloop dashboards mlflow [...]     serve the workspace's MLflow store in the MLflow UI
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from segloop.config import Config, dump_config, load_config
from segloop.errors import SegloopError

FLOWS = ("smoke", "active_learning", "embed", "synthesize", "pseudolabel", "usam")


def _default_config_path() -> str | None:
    return "params.yaml" if Path("params.yaml").is_file() else None


def _load(path: str | None) -> Config:
    return load_config(path if path is not None else _default_config_path())


def _cmd_config(args: argparse.Namespace) -> int:
    if args.action == "show":
        cfg = Config() if args.defaults else _load(args.paths[0] if args.paths else None)
        print(dump_config(cfg), end="")
        return 0
    if not args.paths:
        raise SegloopError("config validate: give at least one YAML file")
    for path in args.paths:
        load_config(path)
        print(f"{path}: OK")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.pipeline)
    from segloop.runtime import configure_offline

    configure_offline(cfg.base.paths.prefect_home)
    from segloop.flows._server import interruptible_server

    with interruptible_server():  # Ctrl-C stops the flow promptly; the run is Cancelled
        return _run_flow(args)


def _run_flow(args: argparse.Namespace) -> int:
    if args.flow == "smoke":
        from segloop.flows.smoke import smoke_flow
        from segloop.smoke import restore_hint

        pipeline = args.pipeline or _default_config_path()
        print(restore_hint(smoke_flow(pipeline=pipeline), pipeline))
    elif args.flow == "active_learning":
        from segloop.flows.active_learning import active_learning_flow

        pipeline = args.pipeline or _default_config_path()
        result = active_learning_flow(pipeline=pipeline)
        print(_al_summary(result, pipeline))
    elif args.flow == "embed":
        from segloop.flows.embed import embed_flow

        summary = embed_flow(pipeline=args.pipeline or _default_config_path())
        print(f"embedded {summary['images_embedded']} image(s) "
              f"({summary['images_skipped']} already present, "
              f"{summary['images_per_second']:.3f} images/s) into {summary['output']}")
    elif args.flow == "synthesize":
        from segloop.flows.synthesize import synthesize_flow

        summary = synthesize_flow(pipeline=args.pipeline or _default_config_path())
        for row in summary["per_class"]:
            print(f"{row['label']:>20}: {row['images']} images ({row['rejected']} rejected)")
        print(f"dataset: {summary['output']}\ncontact sheet: {summary['contact_sheet']}")
    elif args.flow in ("pseudolabel", "usam"):
        from segloop.flows.pseudolabel import pseudolabel_flow
        from segloop.flows.usam import usam_flow

        run_flow = pseudolabel_flow if args.flow == "pseudolabel" else usam_flow
        result = run_flow(pipeline=args.pipeline or _default_config_path())
        print(_pseudo_summary(result["pseudolabel"] if args.flow == "usam" else result))
    return 0


def _pseudo_summary(summary) -> str:  # type: ignore[no-untyped-def]
    """The round's line and metrics, then its refinement's (if any)."""
    lines = []
    if "method" in summary:
        state = ("up to date" if summary["up_to_date"]
                 else f"{summary['images_labelled']} labelled")
        lines.append(f"{summary['method']} round {summary['round']:03d}: {summary['images']} "
                     f"images ({state}) in {summary['round_path']} ({summary['tag']})")
        m = summary.get("metrics")
        if m:
            lines.append(f"mIoU (method's classes) covered "
                         f"{m['miou_covered_method_classes']}, overall "
                         f"{m['miou_overall_method_classes']}; coverage {m['coverage']}; "
                         f"mAP50 {m['map50']}")
    if summary.get("refined"):
        lines.append("refined: " + _pseudo_summary(summary["refined"]))
    return "\n".join(lines)


def _al_summary(result, pipeline: str | None) -> str:  # type: ignore[no-untyped-def]
    flag = f" --pipeline {pipeline}" if pipeline else ""
    lines = [f"{'round':>5} {'% images':>9} {'% pixels':>9} {'mIoU':>7}"]
    lines += [f"{r['round']:>5} {100 * r['image_fraction']:>9.1f} "
              f"{100 * r['pixel_fraction']:>9.2f} {r['miou']:>7.4f}" for r in result.rounds]
    lines.append(f"workspace: {result.workspace}")
    for name, path in result.reports.items():
        lines.append(f"{name}: {path}")
    if result.status == "waiting_for_labels":
        lines.append(f"Waiting for labels: label the tasks in {result.pending} "
                     f"(coco.json or labelstudio.json), then run\n"
                     f"  segloop labels import <finished file or folder>{flag}")
    else:
        lines.append(f"Restore any round with: segloop rounds checkout N{flag}")
    return "\n".join(lines)


def _cmd_labels(args: argparse.Namespace) -> int:
    from segloop.active import human
    from segloop.active.loop import prepare
    from segloop.context import labels_dir
    from segloop.runlock import output_lock

    cfg = _load(args.pipeline)
    ctx = prepare(cfg)
    if args.action == "export":
        folder = human.export_pending(ctx, Path(args.out) if args.out else None)
        print(f"tasks of the pending round written to {folder}")
        return 0
    with output_lock(labels_dir(cfg), "labels import"):  # not beside a running loop
        info, skipped = human.import_round(ctx, args.path,
                                           allow_unlabelled=args.allow_unlabelled)
    print(f"round {info.number:03d} committed: {info.path} (tag {info.tag})")
    if info.created:
        from segloop.runtime import configure_offline

        configure_offline(cfg.base.paths.prefect_home)
        from segloop.flows.events import emit_label_round

        if emit_label_round(ctx.ws.root, info.number, info.tag, info.commit, "human"):
            print("  event segloop.label-round.committed sent to the Prefect server "
                  "(deployments triggered by it start the next round)")
    if skipped:
        print(f"  {skipped} task(s) exported for earlier rounds were in the file and skipped")
    return 0


def _cmd_rounds(args: argparse.Namespace) -> int:
    from segloop.context import open_workspace
    from segloop.versioning import checkout_round, list_rounds

    cfg = _load(args.pipeline)
    ws = open_workspace(cfg)
    kind = _round_kind(cfg, ws.root, args.seeds)
    if args.action == "checkout":
        path = checkout_round(ws, args.number, kind)
        print(f"round {args.number:03d} restored at {path}")
        return 0
    if args.action == "retract":
        from segloop.context import labels_dir
        from segloop.runlock import output_lock
        from segloop.versioning import retract_round

        target = (labels_dir(cfg) if args.seeds is None
                  else (ws.root / kind.dir.format(0)).parent)
        with output_lock(target, "rounds retract"):  # not beside a run writing rounds
            kept = retract_round(ws, args.number, kind)
        print(f"round {args.number:03d} retracted: removed from the workspace in a new "
              f"commit, kept in history as tag {kept}; the next run or import makes round "
              f"{args.number:03d} again")
        return 0
    rounds = list_rounds(ws, kind)
    if args.json:
        print(json.dumps([{**r.__dict__, "path": str(r.path)} for r in rounds], indent=2))
        return 0
    if not rounds:
        print(f"no {kind.what}s yet in workspace {ws.root}")
        return 0
    width = max(12, *(len(r.tag) for r in rounds))
    print(f"{'round':>5}  {'tag':<{width}} {'date':<25} {'files':>6} {'size':>10}  metrics")
    for r in rounds:
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in _headline(r.metrics or {}).items()) or "-"
        print(f"{r.number:>5}  {r.tag:<{width}} {r.date:<25} {r.n_files:>6} "
              f"{_human(r.size_bytes):>10}  {metrics}")
    return 0


SEED_METHODS = ("usam", "sam_clip", "maskdiffusion", "clusters")


def _seed_family(text: str) -> str:
    """``--seeds``: a pseudolabel method, optionally refined (``usam-g4seg``)."""
    base = text
    while base.endswith("-g4seg"):
        base = base.removesuffix("-g4seg")
    if base not in SEED_METHODS:
        raise argparse.ArgumentTypeError(
            f"unknown seed rounds {text!r}: use one of {', '.join(SEED_METHODS)}, optionally "
            "followed by -g4seg (a G4Seg refinement of that method's rounds)")
    return text


def _round_kind(cfg: Config, root: Path, method: str | None):  # type: ignore[no-untyped-def]
    """Label rounds, or with ``--seeds METHOD`` that method's pseudo-label rounds."""
    from segloop.versioning import LABELS, seed_rounds

    if method is None:
        return LABELS
    from segloop.pseudolabel.plan import resolve_paths

    seeds_cfg = cfg.model_copy(update={"pseudolabel": cfg.pseudolabel.model_copy(
        update={"method": method})})
    return seed_rounds(resolve_paths(seeds_cfg, root).output_rel, method)


HEADLINE = ("miou", "pixel_fraction", "image_fraction", "labelled_images", "clicks",
            "images", "kept", "miou_covered_method_classes", "miou_overall_method_classes",
            "coverage", "map50")


def _headline(metrics: dict) -> dict:  # type: ignore[type-arg]
    """The few numbers a table row can hold (all of them with --json)."""
    flat = {**metrics, **(metrics.get("metrics") or {})}
    shown = {k: flat[k] for k in HEADLINE if k in flat}
    return shown or {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}


def _cmd_lineage(args: argparse.Namespace) -> int:
    from segloop.context import open_workspace
    from segloop.versioning import lineage

    ws = open_workspace(_load(args.pipeline))
    text = (lineage.record_json(ws.root, args.ref) if args.json
            else lineage.format_chain(ws.root, args.ref))
    print(text.rstrip("\n"))
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from segloop.context import resolve_data_root

    print(resolve_data_root(_load(args.pipeline)))
    return 0


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segloop", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pipeline_help = "pipeline config (default: params.yaml if present, else built-in defaults)"

    p = sub.add_parser("config", help="show or validate config files")
    p.add_argument("action", choices=("show", "validate"))
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--defaults", action="store_true", help="show the built-in defaults")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("run", help="run a flow on Prefect's local server")
    p.add_argument("flow", choices=FLOWS)
    p.add_argument("--pipeline", "-p", help=pipeline_help)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("rounds", help="list or restore label rounds (or pseudo-label rounds)")
    rs = p.add_subparsers(dest="action", required=True)
    lp = rs.add_parser("list", help="rounds with tag, date, size and metrics")
    lp.add_argument("--json", action="store_true", help="machine-readable output")
    cp = rs.add_parser("checkout", help="restore a round's files exactly")
    cp.add_argument("number", type=int)
    xp = rs.add_parser("retract", help="undo the latest round (a new commit; its tag is "
                       "kept as <tag>-retracted-<k>)")
    xp.add_argument("number", type=int)
    for q in (lp, cp, xp):
        q.add_argument("--pipeline", "-p", help=pipeline_help)
        q.add_argument("--seeds", type=_seed_family, metavar="METHOD",
                       help="the pseudolabel flow's rounds of METHOD (usam, sam_clip, "
                       "maskdiffusion, clusters, or one of them refined: usam-g4seg) "
                       "instead of label rounds")
    p.set_defaults(func=_cmd_rounds)

    p = sub.add_parser("labels", help="export labelling tasks / import finished labels")
    ls = p.add_subparsers(dest="action", required=True)
    ep = ls.add_parser("export", help="write the pending round's tasks (COCO, Label Studio)")
    ep.add_argument("--out", help="folder to write to (default: the workspace's work/ folder)")
    ip = ls.add_parser("import", help="validate finished labels and commit the pending round")
    ip.add_argument("path", help="COCO JSON, Label Studio JSON export, or a folder of PNGs")
    ip.add_argument("--allow-unlabelled", action="store_true",
                    help="commit even if no selected unit (or most of them) has a label")
    for q in (ep, ip):
        q.add_argument("--pipeline", "-p", help=pipeline_help)
    p.set_defaults(func=_cmd_labels)

    p = sub.add_parser("lineage", help="what made a round, dataset or model, and from what")
    p.add_argument("ref", help="a tag (labels/r002, pseudolabels/usam/r000), a versioned path "
                   "(models/round_001.safetensors) or PATH@COMMIT")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--pipeline", "-p", help=pipeline_help)
    p.set_defaults(func=_cmd_lineage)

    p = sub.add_parser("data", help="find (or download once) the configured dataset")
    p.add_argument("action", choices=("locate",))
    p.add_argument("--pipeline", "-p", help=pipeline_help)
    p.set_defaults(func=_cmd_data)

    from segloop.tracking.commands import add_parsers

    add_parsers(sub, pipeline_help, _load)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SegloopError as err:
        print(f"segloop: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segloop: interrupted; a rerun resumes where this one stopped", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  (a bug: short message unless debugging)
        if os.environ.get("SEGLOOP_DEBUG"):
            raise
        print(f"segloop: internal error: {type(err).__name__}: {err}\n"
              "This is a bug in segloop, not in your input: rerun with SEGLOOP_DEBUG=1 to "
              "see the traceback, and please report it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
