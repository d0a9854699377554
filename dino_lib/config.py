"""Typed configurations: dataclasses loaded from YAML, validated with clear errors, recorded per run.

Every command-line twin (``python -m dino_lib.<module> --config FILE [key=value ...]``) and every notebook
goes through :func:`load_config`, so one set of checks guards all entry points:

* unknown keys are errors with a "did you mean" suggestion;
* values are checked against the field's type annotation (``int``, ``float``, ``bool``, ``str``, ``X | None``,
  ``list[X]``, ``tuple[X, ...]``, ``Literal[...]``, nested dataclasses, ``dict``);
* range and choice constraints declared with :func:`param` name the key and what is allowed.

Derived values are computed once by the consumer (style rule 2) and the resolved config, the package version,
the git commit and the torch version are written into the run directory by :func:`save_run_config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import subprocess
import types
import typing
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from dino_lib.utils.errors import ConfigError
from dino_lib.utils.io import atomic_write_text

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "PRECISION_CHOICES",
    "legacy_precision",
    "param",
    "from_dict",
    "to_dict",
    "load_config",
    "parse_overrides",
    "save_run_config",
    "run_metadata",
    "locate_error",
]


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` / ``5E4`` as floats (YAML 1.2; PyYAML 1.1 keeps them strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def _with_key(err: ConfigError, key: str) -> ConfigError:
    if err.key is None:
        err.key = key
    return err


def param(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    choices: Sequence[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    help: str = "",
) -> Any:
    """A dataclass field with validation metadata (choices and numeric bounds) and a help string."""
    meta = {"choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "help": help}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` where lossless (int -> float, list -> tuple), else raise ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, tp, key)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: expected one of {list(typing.get_args(tp))}, found {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, found {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        return _check_sequence(value, tp, key)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, found {value!r}")
        return dict(value)
    if tp in (bool, int, float, str):
        return _check_scalar(value, tp, key)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, found {value!r}")


def _check_union(value: Any, tp: Any, key: str) -> Any:
    """``X | Y | None``: ``None`` when allowed, else the first member type that accepts the value."""
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _check_value(value, arg, key)
        except ConfigError:
            continue
    raise ConfigError(f"{key}: expected {_type_name(tp)}, found {value!r} ({type(value).__name__})")


def _check_sequence(value: Any, tp: Any, key: str) -> list[Any] | tuple[Any, ...]:
    """``list[X]``, ``tuple[X, ...]`` or a fixed ``tuple[X, Y]``: each item checked, tuples returned as tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{key}: expected a list, found {value!r} ({type(value).__name__})")
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, found {len(value)}: {value!r}")
        return tuple(_check_value(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item_tp = args[0] if args else Any
    items = [_check_value(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if (origin is tuple or tp is tuple) else items


def _check_scalar(value: Any, tp: type, key: str) -> Any:
    """``bool``, ``int``, ``float`` (an int is widened) or ``str`` (a Path is accepted; a YAML boolean gets a hint)."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, found {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, found {value!r} ({type(value).__name__})")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, found {value!r} ({type(value).__name__})")
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool):
        raise ConfigError(
            f"{key}: expected a string, found {str(value).lower()} (YAML reads unquoted off/on/no/yes/false/true "
            f"as a boolean); quote the value, e.g. {key.rsplit('.', 1)[-1]}: 'off'"
        )
    raise ConfigError(f"{key}: expected a string, found {value!r} ({type(value).__name__})")


def _check_bounds(value: Any, meta: Mapping[str, Any], key: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: expected one of {list(choices)}, found {value!r}")
    if value is None or not isinstance(value, int | float) or isinstance(value, bool):
        return
    checks = {
        "ge": (">=", lambda a, b: a >= b),
        "gt": (">", lambda a, b: a > b),
        "le": ("<=", lambda a, b: a <= b),
        "lt": ("<", lambda a, b: a < b),
    }
    for name, (symbol, holds) in checks.items():
        limit = meta.get(name)
        if limit is not None and not holds(value, limit):
            raise ConfigError(f"{key}: must be {symbol} {limit}, found {value!r}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, prefix: str = "", source: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, validating keys, types and bounds.

    Args:
        cls: the dataclass type.
        data: the values; missing keys take the field defaults.
        prefix: dotted prefix used in messages for nested configs.
        source: file name used in messages.

    Raises:
        ConfigError: on unknown keys (with a suggestion), missing required keys, wrong types or values.
    """
    data = dict(data or {})
    where = f" in {source}" if source else ""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if "precision" in known:
        data = _migrate_precision_keys(data, prefix, where)
    _reject_removed_keys(cls, data, prefix, where)
    unknown = [k for k in data if k not in known]
    if unknown:
        msgs = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), list(known), n=1, cutoff=0.6)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            msgs.append(f"'{prefix}{k}'{hint}")
        raise _with_key(
            ConfigError(
                f"unknown key{'s' if len(msgs) > 1 else ''} {', '.join(msgs)}{where}; "
                f"allowed keys for {cls.__name__}: {', '.join(prefix + n for n in known)}"
            ),
            f"{prefix}{unknown[0]}",
        )
    kwargs: dict[str, Any] = {}
    for name, fld in known.items():
        key = prefix + name
        if name in data:
            try:
                value = _check_value(data[name], hints[name], key)
            except ConfigError as err:
                located = ConfigError(f"{err}{where}") if where else err
                located.key = err.key
                raise _with_key(located, key) from None
        elif fld.default is not dataclasses.MISSING:
            value = fld.default
        elif fld.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = fld.default_factory()  # type: ignore[misc]
        else:
            raise _with_key(ConfigError(f"missing required key '{key}'{where}"), key)
        try:
            _check_bounds(value, fld.metadata, key)
        except ConfigError as err:
            raise _with_key(ConfigError(f"{err}{where}"), key) from None
        kwargs[name] = value
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def _reject_removed_keys(cls: type, data: Mapping[str, Any], prefix: str, where: str) -> None:
    """A key listed in ``cls.REMOVED_KEYS`` (key -> where its job went) is an error that says so."""
    removed: Mapping[str, str] = getattr(cls, "REMOVED_KEYS", {})
    gone = [k for k in data if k in removed]
    if gone:
        key = f"{prefix}{gone[0]}"
        raise _with_key(ConfigError(f"'{key}'{where} is no longer a key: {removed[gone[0]]}"), key)


#: The precision vocabulary of every config key ``precision``; :mod:`dino_lib.runtime` resolves ``auto``.
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")

# Old keys of earlier configs, in the order that decides between them, and what their values meant.
_OLD_PRECISION_KEYS = ("dtype", "amp", "score_dtype")
_LEGACY_PRECISION: dict[str, dict[Any, str]] = {
    "dtype": {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"},
    "score_dtype": {"float32": "fp32", "bfloat16": "bf16"},
    "amp": {False: "fp32", True: "bf16"},
}


def legacy_precision(key: str, value: Any) -> str:
    """The ``precision`` an old key meant (``dtype: bfloat16`` -> ``bf16``, ``amp: true`` -> ``bf16``).

    Raises:
        ConfigError: a value the old key never accepted.
    """
    table = _LEGACY_PRECISION.get(key)
    if table is None or value not in table:
        allowed = list(table) if table else []
        raise ConfigError(f"{key}: deprecated key with unknown value {value!r} (it took {allowed}); use precision")
    return table[value]


def _migrate_precision_keys(data: dict[str, Any], prefix: str, where: str) -> dict[str, Any]:
    """Read the old precision keys (``dtype``, ``amp``, ``score_dtype``) as ``precision``, with a deprecation warning.

    An explicit ``precision`` wins over old keys; among old keys the first found in that order decides.
    """
    old = [k for k in _OLD_PRECISION_KEYS if k in data]
    if not old:
        return data
    data = dict(data)
    values = {}
    for key in old:
        try:
            values[key] = legacy_precision(key, data.pop(key))
        except ConfigError as err:
            raise ConfigError(f"{prefix}{err}{where}") from None
    chosen = data.get("precision", values[old[0]])
    data.setdefault("precision", chosen)
    listed = ", ".join(f"{prefix}{k}" for k in old)
    message = (
        f"{listed}{where} {'is' if len(old) == 1 else 'are'} deprecated and will be removed: "
        f"write '{prefix}precision: {chosen}' instead (auto | fp32 | bf16 | fp16; see docs/runtime.md)"
    )
    warnings.warn(message, FutureWarning, stacklevel=4)
    return data


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-data (YAML-safe) dictionary of a config dataclass; tuples become lists."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=3", "name=vit_small"]`` into a nested dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. epochs=10)")
        key, raw = item.split("=", 1)
        value = _yaml_load(raw) if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in delta.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
            merged[k] = _merge(dict(merged[k]), v)
        else:
            merged[k] = v
    return merged


#: Parameter folders renamed to their notebook's name; the old names still resolve, with a deprecation message.
RENAMED_PARAMS = {"attention": "attention_maps", "propagate": "propagate_segmentation"}


def _renamed_params_path(path: Path) -> Path:
    """``params/attention/x.yaml`` -> ``params/attention_maps/x.yaml`` (and ``propagate``) when only that exists."""
    parts = path.parts
    if len(parts) >= 3 and parts[-3] == "params" and parts[-2] in RENAMED_PARAMS:
        new = path.parent.parent / RENAMED_PARAMS[parts[-2]] / path.name
        if new.is_file():
            import warnings

            msg = f"{path}: params/{parts[-2]}/ was renamed params/{RENAMED_PARAMS[parts[-2]]}/; reading {new}"
            warnings.warn(msg, DeprecationWarning, stacklevel=3)
            logging.getLogger(__name__).warning("deprecated: %s", msg)
            return new
    return path


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; clear errors for a missing file or a non-mapping."""
    path = Path(path)
    if not path.is_file():
        path = _renamed_params_path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (give the path of an existing YAML file)")
    try:
        data = _yaml_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level, found {type(data).__name__}")
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> T:
    """Load ``cls`` from a YAML file (optional) plus overrides (``key=value`` strings or a mapping).

    A mapping of overrides is what notebooks and scripts pass (their parameter variables): errors then name them
    as notebook parameters. (Command lines go through :func:`dino_lib.cli.parse_config`, notebooks through
    :func:`dino_lib.notebook.notebook_config`, which also shows such errors as one message in IPython.)
    """
    from_mapping = isinstance(overrides, Mapping)
    data = read_yaml(path) if path is not None else {}
    data.pop("_meta", None)  # written by save_run_config; a run's config.yaml can be reloaded as is
    delta = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    try:
        return from_dict(cls, _merge(data, delta))
    except ConfigError as err:
        raise locate_error(err, path, delta, where="notebook parameters" if from_mapping else "command line") from None


def locate_error(
    err: ConfigError, path: str | Path | None, delta: Mapping[str, Any], where: str = "command line"
) -> ConfigError:
    """``err`` prefixed with its source: the YAML file, or ``where`` (the overrides) when they set the key.

    So ``epochs=-1`` on the command line is blamed on the command line, never on the file it overrides.
    """
    if err.key is not None and _sets_key(delta, err.key):
        source = where
    elif err.key is not None or not delta:
        source = str(path) if path is not None else "defaults"
    else:  # a check across keys: both may be at fault
        source = f"{path} with the {where}" if path is not None else where
    located = type(err)(f"{source}: {err}")
    located.key = err.key
    return located


def _sets_key(delta: Mapping[str, Any], key: str) -> bool:
    """Whether the nested override mapping ``delta`` sets dotted ``key`` (or a mapping above it)."""
    node: Any = delta
    for part in re.sub(r"\[\d+\]", "", key).split("."):
        if not isinstance(node, Mapping):
            return True  # the override replaced a whole value above this key
        if part not in node:
            return False
        node = node[part]
    return True


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_metadata() -> dict[str, Any]:
    """Package version, git commit and library versions recorded in every run directory."""
    import platform

    import torch

    import dino_lib

    return {
        "dino_lib_version": dino_lib.__version__,
        "git_commit": _git_commit(),
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
    }


def save_run_config(cfg: Any, run_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config plus run metadata (under ``_meta``) atomically into ``run_dir``.

    Call it when the run starts its real work (after its inputs were checked): it also marks the run as started
    for :class:`dino_lib.utils.rundir.RunFolder`, so a failure before this point leaves no files behind.
    """
    from dino_lib.utils.rundir import mark_started

    run_dir = Path(run_dir)
    mark_started(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = to_dict(cfg)
    payload["_meta"] = run_metadata()
    path = run_dir / name
    atomic_write_text(path, yaml.safe_dump(payload, sort_keys=False))
    return path
