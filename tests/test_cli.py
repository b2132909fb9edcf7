"""The `segloop` command, in-process (the flow itself is covered in tests/flows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from segloop.cli import main
from segloop.config import Config, parse_config
from segloop.versioning import commit_round, init_workspace, record_round_metrics


def _pipeline(tmp_path: Path, root: Path) -> Path:
    f = tmp_path / "pipe.yaml"
    f.write_text(yaml.safe_dump({
        "base": {"paths": {"workspace": str(tmp_path / "ws"),
                           "dvc_remote": str(tmp_path / "remote")}},
        "data": {"root": str(root)},
    }))
    return f


def test_config_show_prints_the_full_config(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("smoke:\n  n_images: 5\n")
    assert main(["config", "show", str(f)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert parse_config(shown) == parse_config({"smoke": {"n_images": 5}})
    assert shown["data"]["classes"]["ignore_index"] == 11


def test_config_validate_reports_the_bad_key(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("base:\n  seed: 4\n")
    bad.write_text("data:\n  splt: val\n")
    assert main(["config", "validate", str(good)]) == 0
    assert f"{good}: OK" in capsys.readouterr().out
    assert main(["config", "validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "data.splt: unknown key" in err


def test_data_locate(capsys: pytest.CaptureFixture, tmp_path: Path, camvid_root: Path) -> None:
    assert main(["data", "locate", "-p", str(_pipeline(tmp_path, camvid_root))]) == 0
    assert capsys.readouterr().out.strip() == str(camvid_root)
    missing = _pipeline(tmp_path, tmp_path / "nowhere")
    assert main(["data", "locate", "-p", str(missing)]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err


def test_rounds_list_and_checkout(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, tmp_path)
    assert main(["rounds", "list", "-p", str(pipe)]) == 0
    assert "no label rounds yet" in capsys.readouterr().out

    ws = init_workspace(tmp_path / "ws", tmp_path / "remote")
    commit_round(ws, 0, lambda d: (d / "a.txt").write_text("round zero\n"))
    record_round_metrics(ws, 0, {"miou": 0.4321, "labelled_fraction": 0.1})
    assert main(["rounds", "list", "-p", str(pipe)]) == 0
    out = capsys.readouterr().out
    assert "labels/r000" in out and "miou=0.4321" in out
    assert main(["rounds", "list", "--json", "-p", str(pipe)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["number"], r["n_files"], r["metrics"]["miou"]) for r in listed] == [(0, 1, 0.4321)]

    f = ws.root / "data/labels/round_000/a.txt"
    f.write_text("tampered\n")
    assert main(["rounds", "checkout", "0", "-p", str(pipe)]) == 0
    assert f.read_text() == "round zero\n"
    assert main(["rounds", "checkout", "7", "-p", str(pipe)]) == 2
    assert "round 7 does not exist" in capsys.readouterr().err

    # pseudo-label rounds are their own family: --seeds METHOD
    assert main(["rounds", "list", "--seeds", "usam", "-p", str(pipe)]) == 0
    assert "no usam pseudo-label rounds yet" in capsys.readouterr().out
    from segloop.versioning import seed_rounds

    kind = seed_rounds("data/pseudolabels/usam", "usam")
    commit_round(ws, 0, lambda d: (d / "b.txt").write_text("seeds\n"), kind=kind)
    record_round_metrics(ws, 0, {"images": 5, "metrics": {"map50": 0.25}}, kind=kind)
    assert main(["rounds", "list", "--seeds", "usam", "-p", str(pipe)]) == 0
    out = capsys.readouterr().out
    assert "pseudolabels/usam/r000" in out and "images=5" in out and "map50=0.25" in out
    (ws.root / "data/pseudolabels/usam/round_000/b.txt").write_text("tampered\n")
    assert main(["rounds", "checkout", "0", "--seeds", "usam", "-p", str(pipe)]) == 0
    assert (ws.root / "data/pseudolabels/usam/round_000/b.txt").read_text() == "seeds\n"


def test_default_config_is_params_yaml_when_present(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["config", "show"]) == 0
    assert parse_config(yaml.safe_load(capsys.readouterr().out)) == Config()
    (tmp_path / "params.yaml").write_text("smoke:\n  n_images: 3\n")
    assert main(["config", "show"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["smoke"]["n_images"] == 3


def test_a_bug_is_reported_in_one_line_and_an_interrupt_exits_130(
        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import segloop.cli as cli

    def boom(args) -> int:  # type: ignore[no-untyped-def]
        raise RuntimeError("unexpected state")

    def stop(args) -> int:  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    parser = cli.build_parser()
    for func, code in ((boom, 1), (stop, 130)):
        monkeypatch.setattr(cli, "build_parser", lambda func=func: _with_func(parser, func))
        assert main(["config", "show"]) == code
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.startswith("segloop: ")
    monkeypatch.setenv("SEGLOOP_DEBUG", "1")
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser, boom))
    with pytest.raises(RuntimeError, match="unexpected state"):
        main(["config", "show"])


def _with_func(parser, func):  # type: ignore[no-untyped-def]
    """``parser`` whose parsed arguments call ``func``."""
    class Wrapped:
        def parse_args(self, argv):  # type: ignore[no-untyped-def]
            args = parser.parse_args(argv)
            args.func = func
            return args
    return Wrapped()


def test_pseudo_summary_prints_the_round_and_its_refinement() -> None:
    from segloop.cli import _pseudo_summary

    refined = {"method": "usam-g4seg", "round": 0, "images": 4, "up_to_date": False,
               "images_labelled": 4, "round_path": "r", "tag": "pseudolabels/usam-g4seg/r000",
               "metrics": None}
    text = _pseudo_summary({"method": "usam", "round": 2, "images": 4, "up_to_date": True,
                            "round_path": "p", "tag": "pseudolabels/usam/r002",
                            "metrics": None, "refined": refined})
    assert text.splitlines() == [
        "usam round 002: 4 images (up to date) in p (pseudolabels/usam/r002)",
        "refined: usam-g4seg round 000: 4 images (4 labelled) in r "
        "(pseudolabels/usam-g4seg/r000)"]
    assert _pseudo_summary({"refined": refined}).startswith("refined: usam-g4seg round 000")


def test_seed_round_families_accept_refinements_and_refuse_typos() -> None:
    import argparse

    from segloop.cli import _seed_family

    assert _seed_family("maskdiffusion-g4seg") == "maskdiffusion-g4seg"
    assert _seed_family("usam-g4seg-g4seg") == "usam-g4seg-g4seg"
    with pytest.raises(argparse.ArgumentTypeError, match="unknown seed rounds 'usma'"):
        _seed_family("usma")
