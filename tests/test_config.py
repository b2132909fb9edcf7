from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segloop.config import Config, dump_config, load_config, parse_config
from segloop.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_valid_and_frozen() -> None:
    cfg = Config()
    assert cfg.data.classes.num_classes == 11
    assert cfg.data.classes.ignore_index == 11
    with pytest.raises(Exception, match="frozen"):
        cfg.base.seed = 3  # type: ignore[misc]


def test_params_yaml_spells_out_the_defaults() -> None:
    # params.yaml is what DVC tracks: it must list every value, and they must be the defaults.
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert raw == Config().to_dict()
    assert load_config(ROOT / "params.yaml") == Config()


@pytest.mark.parametrize("path", sorted((ROOT / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_every_pipeline_file_validates(path: Path) -> None:
    assert isinstance(load_config(path), Config)


def test_unknown_key_is_named_with_its_path(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("smoke:\n  n_imagez: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert str(f) in str(err.value)
    assert "smoke.n_imagez: unknown key" in str(err.value)


def test_bad_value_names_key_and_value(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("base:\n  device: tpu\nsmoke:\n  n_images: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert "base.device" in msg and "'tpu'" in msg
    assert "smoke.n_images" in msg and "greater than or equal to 1" in msg


def test_pseudolabel_section_defaults_and_errors() -> None:
    cfg = parse_config({"pseudolabel": {"method": "sam_clip", "usam": {"tau": 0.3}}})
    assert cfg.pseudolabel.method == "sam_clip" and cfg.pseudolabel.usam.tau == 0.3
    assert Config().pseudolabel.usam.tau == "median" and Config().pseudolabel.conf == 0.5
    assert Config().pseudolabel.sam_clip.threshold == 0.7
    with pytest.raises(ConfigError, match=r"pseudolabel\.usam\.alpha: unknown key"):
        parse_config({"pseudolabel": {"usam": {"alpha": 3}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"pseudolabel\.method"):
        parse_config({"pseudolabel": {"method": "kmeans"}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"pseudolabel\.sam_clip\.template"):
        parse_config({"pseudolabel": {"sam_clip": {"template": "a photo"}}}, "x.yaml")


def test_synth_classes_superclasses_and_presets() -> None:
    cfg = parse_config({"synth": {"classes": ["forklift", {"label": "vehicle",
                                                            "names": ["car", "truck"]}],
                                  "templates": "varied"}})
    assert [(c.label, c.names) for c in cfg.synth.classes] == [
        ("forklift", ("forklift",)), ("vehicle", ("car", "truck"))]
    assert len(cfg.synth.templates) == 7
    with pytest.raises(ConfigError, match=r"synth\.templates: .*has no \{c\}"):
        parse_config({"synth": {"templates": ["a photo"]}})
    with pytest.raises(ConfigError, match=r"synth\.templates: .*unknown template preset"):
        parse_config({"synth": {"templates": "fancy"}})
    with pytest.raises(ConfigError, match=r"synth\.images_per_class: .*greater than or equal"):
        parse_config({"synth": {"images_per_class": 0}})
    with pytest.raises(ConfigError, match=r"models\.diffusion\.scheduler: .*'pndm'"):
        parse_config({"models": {"diffusion": {"scheduler": "fancy"}}})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("base:\n  seed: 1\n  paths: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: line \d+, column \d+ is not valid YAML"):
        load_config(f)


def test_missing_file_and_wrong_top_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(f)


def test_classes_builtin_name_or_explicit_spec() -> None:
    cfg = parse_config({"data": {"classes": "camvid"}})
    assert cfg.data.classes.names[0] == "sky"
    spec = {"classes": [{"name": "bg", "id": 0}, {"name": "forklift", "id": 1}],
            "ignore_index": 255}
    cfg = parse_config({"data": {"classes": spec}})
    assert cfg.data.classes.names == ("bg", "forklift")
    with pytest.raises(ConfigError, match=r"data\.classes"):
        parse_config({"data": {"classes": "pascal-nope"}})


def test_dump_round_trips() -> None:
    cfg = parse_config({"smoke": {"n_images": 7}, "data": {"split": "val"}})
    assert parse_config(yaml.safe_load(dump_config(cfg))) == cfg


def test_config_strategies_are_the_implemented_ones() -> None:
    from typing import get_args

    from segloop.active.acquisition import STRATEGIES
    from segloop.config import ActiveConfig

    assert set(get_args(ActiveConfig.model_fields["strategy"].annotation)) == set(STRATEGIES)
    with pytest.raises(ConfigError, match=r"active\.strategy"):
        parse_config({"active": {"strategy": "coreset"}})


def test_credentials_must_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from segloop.data.fs import resolve_env
    from segloop.errors import DataError

    with pytest.raises(ConfigError, match=r"data.storage_options.secret holds a literal"):
        parse_config({"data": {"storage_options": {"key": "${env:K}", "secret": "abc"}}})
    with pytest.raises(ConfigError, match=r"remote URL holds a literal password"):
        parse_config({"base": {"paths": {"dvc_remote": "https://u:pw@host/dvc"}}})
    cfg = parse_config({
        "data": {"storage_options": {"key": "${env:K}", "token": "anon", "anon": False,
                                     "client_kwargs": {"secret": "${env:S}"}}},
        "base": {"paths": {"dvc_remote": "https://u:${env:PW}@host/dvc"}}})
    # the config (and so any flow parameter) keeps the references, never the values
    assert "${env:K}" in str(cfg.model_dump())
    monkeypatch.setenv("K", "AKIA123")
    with pytest.raises(DataError, match=r"\$\{env:S\}, but S is not set"):
        resolve_env(cfg.data.storage_options)
    monkeypatch.setenv("S", "s3cret")
    assert resolve_env(cfg.data.storage_options) == {
        "key": "AKIA123", "token": "anon", "anon": False, "client_kwargs": {"secret": "s3cret"}}
