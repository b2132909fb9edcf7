"""The ``segloop`` command: config, runs, label rounds and data, over the library.

    segloop config show [PATH]          print the full config (defaults filled in)
    segloop config validate PATH...     check config files; exit 2 on the first bad one
    segloop run smoke [--pipeline P]    run a flow on Prefect's local server
    segloop rounds list [--pipeline P]  label rounds with tag, date, size, metrics
    segloop rounds checkout N [...]     restore round N's files exactly
    segloop data locate [--pipeline P]  find (or download once) the configured dataset
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from segloop.config import Config, dump_config, load_config
from segloop.errors import SegloopError

FLOWS = ("smoke",)


def _default_config_path() -> str | None:
    return "params.yaml" if Path("params.yaml").is_file() else None


def _load(path: str | None) -> Config:
    return load_config(path if path is not None else _default_config_path())


def _cmd_config(args: argparse.Namespace) -> int:
    if args.action == "show":
        print(dump_config(_load(args.paths[0] if args.paths else None)), end="")
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
    if args.flow == "smoke":
        from flows.smoke import smoke_flow
        from segloop.smoke import restore_hint

        pipeline = args.pipeline or _default_config_path()
        print(restore_hint(smoke_flow(pipeline=pipeline), pipeline))
    return 0


def _cmd_rounds(args: argparse.Namespace) -> int:
    from segloop.smoke import open_workspace
    from segloop.versioning import checkout_round, list_rounds

    ws = open_workspace(_load(args.pipeline))
    if args.action == "checkout":
        path = checkout_round(ws, args.number)
        print(f"round {args.number:03d} restored at {path}")
        return 0
    rounds = list_rounds(ws)
    if args.json:
        print(json.dumps([{**r.__dict__, "path": str(r.path)} for r in rounds], indent=2))
        return 0
    if not rounds:
        print(f"no label rounds yet in workspace {ws.root}")
        return 0
    print(f"{'round':>5}  {'tag':<12} {'date':<25} {'files':>6} {'size':>10}  metrics")
    for r in rounds:
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in (r.metrics or {}).items()) or "-"
        print(f"{r.number:>5}  {r.tag:<12} {r.date:<25} {r.n_files:>6} "
              f"{_human(r.size_bytes):>10}  {metrics}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from segloop.smoke import resolve_data_root

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
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("run", help="run a flow on Prefect's local server")
    p.add_argument("flow", choices=FLOWS)
    p.add_argument("--pipeline", "-p", help=pipeline_help)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("rounds", help="list or restore label rounds")
    rs = p.add_subparsers(dest="action", required=True)
    lp = rs.add_parser("list", help="rounds with tag, date, size and metrics")
    lp.add_argument("--json", action="store_true", help="machine-readable output")
    cp = rs.add_parser("checkout", help="restore a round's files exactly")
    cp.add_argument("number", type=int)
    for q in (lp, cp):
        q.add_argument("--pipeline", "-p", help=pipeline_help)
    p.set_defaults(func=_cmd_rounds)

    p = sub.add_parser("data", help="find (or download once) the configured dataset")
    p.add_argument("action", choices=("locate",))
    p.add_argument("--pipeline", "-p", help=pipeline_help)
    p.set_defaults(func=_cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SegloopError as err:
        print(f"segloop: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
