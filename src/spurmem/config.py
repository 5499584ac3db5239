"""Typed configuration: YAML files validated by pydantic models, ``key=value`` overrides, and
unknown keys rejected with the nearest valid key suggested.

The mechanism is generic: any stage defines a pydantic model (``extra="forbid"``) and calls
:func:`load_config` with it. Errors name the file and line (or the override), the dotted key, what
was expected and, for an unknown key, the nearest valid one.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from spurmem.errors import SpurmemError

M = TypeVar("M", bound=BaseModel)


class ConfigError(SpurmemError, ValueError):
    """A config file or override is invalid; the message names the key and what was expected."""


def load_config(model_cls: type[M], path: str | Path | None = None, overrides: Sequence[str] = ()) -> M:
    """Build ``model_cls`` from a YAML file (optional) plus ``key=value`` overrides (dotted keys).

    Override values are parsed as YAML (``epochs=3``, ``eval_splits=[val,test]``, ``weights=null``).
    """
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    source = "<defaults>"
    if path is not None:
        path = find_config(path)
        source = str(path)
        data, lines = read_yaml_mapping(path)
    origins: dict[tuple[str, ...], str] = {}
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value, item)
        origins[tuple(key.split("."))] = f"override {item!r}"
    return validate_config(model_cls, data, source=source, lines=lines, origins=origins)


def validate_config(
    model_cls: type[M],
    data: dict[str, Any],
    source: str = "<config>",
    lines: dict[tuple[str, ...], int] | None = None,
    origins: dict[tuple[str, ...], str] | None = None,
) -> M:
    """Validate a plain dict against ``model_cls``; every problem is reported in one ConfigError."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(model_cls, err, source, lines or {}, origins or {}) for err in exc.errors()]
        raise ConfigError(f"invalid {model_cls.__name__} config:\n  " + "\n  ".join(problems)) from None


PACKAGED_CONFIGS = "configs"  # folder of YAML configs inside the spurmem package (the repo's configs/ mirrors it)


def packaged_configs() -> dict[str, Path]:
    """The configs shipped with spurmem: name (file stem) -> path, so an installed wheel has them too."""
    from importlib.resources import files

    folder = Path(str(files("spurmem") / PACKAGED_CONFIGS))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def find_config(path: str | Path) -> Path:
    """``path`` if it exists, else the shipped config of that name (``erm_fashion_waterbirds``,
    ``erm_fashion_waterbirds.yaml`` or ``configs/erm_fashion_waterbirds.yaml`` all name it)."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = packaged_configs()
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if name in shipped and (path.parent == Path(".") or path.parent.name == PACKAGED_CONFIGS):
        return shipped[name]
    raise ConfigError(f"config file {path} does not exist (configs shipped with spurmem, usable by name: "
                      f"{', '.join(shipped) or 'none'})")


def parse_override(item: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", parsed value)``; the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({exc})") from None
    return key, value


def dump_config(config: BaseModel) -> str:
    """The config as YAML with every field, in declaration order."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def config_hash(config: BaseModel, exclude: Iterable[str] = ()) -> str:
    """A stable short hash of the config's fields (minus ``exclude``), for provenance and resume checks."""
    payload = config.model_dump(mode="json", exclude=set(exclude))
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def nearest_key(key: str, valid: Iterable[str]) -> str | None:
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return near[0] if near else None


def read_yaml_mapping(path: str | Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """A YAML config file as (mapping, line of every dotted key), read with ``yaml.safe_load`` only.

    A missing, binary or unreadable file, an empty one, invalid YAML, a YAML tag (``!!python/...``:
    never constructed) or a top level that is not a mapping is an error naming the file (and line).
    """
    from spurmem.untrusted import read_text_file

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = read_text_file(path, "a YAML config file")
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or exc
        if isinstance(exc, yaml.constructor.ConstructorError):
            raise ConfigError(f"{where}: YAML tags are not allowed in config files ({problem})") from None
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config file") from None
    if data is None:
        raise ConfigError(f"{path}: empty config file; expected a mapping of key: value "
                          "(write {} for all defaults, or leave the file out)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value at the top level, got {type(data).__name__}")
    if _expanded_size(node, {}) > MAX_CONFIG_NODES:
        raise ConfigError(f"{path}: YAML aliases expand to more than {MAX_CONFIG_NODES} values; "
                          "not a config file (an alias bomb?)")
    lines: dict[tuple[str, ...], int] = {}
    _key_lines(node, (), lines)
    return data, lines


# -- internals -------------------------------------------------------------------------------------
MAX_CONFIG_NODES = 100_000  # values after expanding YAML aliases (anchors stay usable, bombs do not)


def _expanded_size(node: yaml.Node | None, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (memoised: linear time)."""
    if node is None:
        return 0
    if id(node) not in memo:
        memo[id(node)] = 0  # a recursive alias counts once
        children = node.value if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) else []
        flat = [n for pair in children for n in pair] if isinstance(node, yaml.MappingNode) else children
        memo[id(node)] = 1 + sum(_expanded_size(child, memo) for child in flat)
    return memo[id(node)]


def _key_lines(node: yaml.Node | None, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            out[key] = key_node.start_mark.line + 1
            _key_lines(value_node, key, out)


def set_dotted(data: dict[str, Any], key: str, value: Any, item: str) -> None:
    """Set the dotted ``key`` of the nested mapping ``data`` to ``value`` (mappings made on the way);
    ``item`` (the override or setting it came from) names it in the error for a key under a non-mapping."""
    parts = key.split(".")
    target = data
    for i, part in enumerate(parts[:-1]):
        child = target.get(part)
        if child is None:
            child = target[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a mapping")
        target = child
    target[parts[-1]] = value


def _fields_at(model_cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the (nested) pydantic model that holds the last element of ``loc``; a model
    may sit in an optional field (``X | None``) or be the values of a mapping (``dict[str, X]``)."""
    current: Any = model_cls
    for part in loc[:-1]:
        current = _unwrap_optional(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) is dict and len(typing.get_args(current)) == 2:
            current = typing.get_args(current)[1]  # ``part`` is a key of the mapping
        else:
            return None
    current = _unwrap_optional(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _unwrap_optional(annotation: Any) -> Any:
    """``X | None`` (or ``Optional[X]``) -> ``X``; anything else as it is."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _origin(loc: tuple[str, ...], origins: dict[tuple[str, ...], str]) -> str | None:
    """The override that set ``loc``, a key above it (``epochs.x=3`` for ``epochs``) or below it
    (``optim.lr=3`` for an unknown ``optim``); None when no override touched it."""
    if loc in origins or not loc:
        return origins.get(loc)
    n = len(loc)
    return next((o for k, o in origins.items() if k[:n] == loc or loc[: len(k)] == k), None)


def _describe(model_cls, err: dict, source: str, lines: dict, origins: dict) -> str:
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "<top level>"
    where = _origin(loc, origins) or (f"{source}:{lines[loc]}" if loc in lines else source)
    if err["type"] == "extra_forbidden":
        valid = _fields_at(model_cls, loc) or []
        near = nearest_key(loc[-1], valid)
        hint = f"; did you mean {'.'.join((*loc[:-1], near))!r}?" if near else ""
        return f"{where}: unknown key {key!r}{hint} Valid keys: {', '.join(valid)}"
    got = err.get("input")
    shown = repr(got) if not isinstance(got, dict) else "a mapping"
    return f"{where}: {key}: {err['msg']} (got {shown})"
