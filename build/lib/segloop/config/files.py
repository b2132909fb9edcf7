"""Config files: validation with errors that name the file and key, YAML load and dump."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from segloop.config.root import Config
from segloop.errors import ConfigError


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid config ({err.error_count()} problem(s)):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key; check its spelling and section")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            lines.append(f"  {key}: {e['msg']}{shown}")
    return "\n".join(lines)


def parse_config(raw: Any, source: str = "<config>") -> Config:
    """Validate a mapping (parsed YAML) into a :class:`Config`; errors name ``source``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, "
                          f"got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None


def load_config(path: str | Path | None = None) -> Config:
    """Load a YAML config (``params.yaml`` or a file under ``pipelines/``).

    ``None`` gives the defaults. A missing file, YAML syntax error or invalid key raises
    :class:`ConfigError` naming the file (and line, or key path).
    """
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass an existing YAML file "
                          "(e.g. params.yaml or pipelines/smoke.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, OSError) as err:
        raise ConfigError(f"{path}: cannot read it as UTF-8 text ({err}); a config is a "
                          "YAML text file (e.g. a copy of params.yaml)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: "
                          f"{getattr(err, 'problem', err)}") from None
    return parse_config(raw, str(path))


class _Dumper(yaml.SafeDumper):
    """Block style for sections; flow style for lists of scalars and for mappings in lists."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(v, list | dict) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _flow_items(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _flow_items(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_FlowDict(v) if isinstance(v, dict) else _flow_items(v) for v in value]
    return value


class _FlowDict(dict):  # type: ignore[type-arg]
    pass


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(
    _FlowDict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))


def dump_config(config: Config) -> str:
    """YAML text of the full config, defaults included."""
    return yaml.dump(_flow_items(config.to_dict()), Dumper=_Dumper, sort_keys=False,
                     width=100)
