"""The one command-line front door of every twin (``python -m dino_lib.<tool>``): arguments, help, errors.

Arguments, in any order:

* ``--config FILE`` (or ``--config=FILE``): the YAML parameter file (optional: the config's defaults otherwise);
* ``key=value``, ``--key value`` or ``--key=value`` (reference style; ``--batch-size-per-gpu`` is read as
  ``batch_size_per_gpu``; a bare ``--flag`` sets a true/false key to true): overrides, values parsed as YAML,
  dotted keys for nested values (``slurm.nodes=2``);
* ``--help``: every key of the config class with its type, default, allowed values and help, grouped as in the
  class; ``--debug``: show the full traceback of an error (also ``DINO_LIB_DEBUG=1``).

Errors in the configuration or the inputs (:class:`~dino_lib.config.ConfigError`, any ``ValueError`` or
``OSError`` such as a missing or unreadable file) are printed by :func:`entry` as one message naming the source
(the YAML file or the command line) and the fix, with exit code 2 and no traceback. Before the tool does any
work, :func:`parse_config` checks the device, that every input path exists and that ``output_dir`` can be
written, and :func:`run_folder` locks ``output_dir`` for the run (:mod:`dino_lib.utils.rundir`).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
import textwrap
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dino_lib.config import ConfigError, _type_name, load_config, locate_error, parse_overrides, read_yaml

__all__ = [
    "DEBUG_ENV",
    "ParsedArgs",
    "parse_args",
    "help_text",
    "parse_config",
    "check_inputs",
    "requested_task",
    "run_folder",
    "entry",
    "format_error",
    "notebook_errors",
]

T = TypeVar("T")

DEBUG_ENV = "DINO_LIB_DEBUG"

# Config keys naming inputs that must exist before a run starts (``sample:<name>`` and other ``scheme:`` values
# are resolved by the tools themselves).
INPUT_KEYS = (
    "data_path",
    "pretrained_weights",
    "region_weights",
    "image_dir",
    "image_path",
    "video_input",
    "ground_truth",
    "predictions",
    "load_features",
    "knn_data_path",
    "linear_weights",
)


_BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


@dataclass
class ParsedArgs:
    """A twin's command line, split into its parts."""

    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    debug: bool = False
    help: bool = False


def _norm_key(key: str) -> str:
    return key.replace("-", "_")


def parse_args(argv: Sequence[str], bool_keys: Sequence[str] = ()) -> ParsedArgs:
    """Split ``argv`` into ``--config``, overrides (all three spellings as ``key=value``), ``--debug``, ``--help``.

    ``bool_keys`` are the keys for which a bare ``--key`` means ``key=true``.

    Raises:
        ConfigError: an argument that is none of these.
    """
    out = ParsedArgs()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            out.help = True
        elif arg == "--debug":
            out.debug = True
        elif arg == "--config" or arg.startswith("--config="):
            if "=" in arg:
                out.config = arg.split("=", 1)[1]
            elif i + 1 < len(args):
                i += 1
                out.config = args[i]
            else:
                raise _cli_error("--config needs a file name: --config params/<tool>/<set>.yaml")
        elif arg.startswith("--local-rank") or arg.startswith("--local_rank"):
            if "=" not in arg:  # torch.distributed.launch adds it; the rank is read from the environment
                i += 1
        elif arg.startswith("--") and len(arg) > 2:
            body = arg[2:]
            if "=" in body:
                key, value = body.split("=", 1)
                out.overrides.append(f"{_norm_key(key)}={value}")
            elif _norm_key(body) in bool_keys and (i + 1 >= len(args) or args[i + 1].lower() not in _BOOL_WORDS):
                out.overrides.append(f"{_norm_key(body)}=true")  # a bare flag
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                i += 1
                out.overrides.append(f"{_norm_key(body)}={args[i]}")
            else:
                raise _cli_error(f"{arg} needs a value: {arg} VALUE, {arg}=VALUE or {body}=VALUE")
        elif "=" in arg and not arg.startswith("-"):
            out.overrides.append(arg)
        else:
            raise _cli_error(f"unexpected argument {arg!r}; give parameters as key=value or --key value (see --help)")
        i += 1
    return out


def _cli_error(message: str) -> ConfigError:
    return ConfigError(f"command line: {message}")


def _debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "no")


# ---------------------------------------------------------------------------------------------------------- help
def _groups(cls: type) -> dict[str, list[str]]:
    """Field names of ``cls`` grouped by the ``# comment`` lines above them in the class body (one group if none)."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {"parameters": names}
    groups: dict[str, list[str]] = {}
    current = "parameters"
    for line in lines:
        comment = re.match(r"^\s{4}#\s*(.+?)\s*$", line)
        if comment:
            current = comment.group(1).rstrip(":")
            continue
        found = re.match(r"^\s{4}(\w+)\s*:", line)
        if found and found.group(1) in names:
            groups.setdefault(current, []).append(found.group(1))
    listed = {n for g in groups.values() for n in g}
    missing = [n for n in names if n not in listed]
    if missing:
        groups.setdefault("parameters", []).extend(missing)
    return groups


def _default_text(fld: dataclasses.Field) -> str:
    if fld.default is not dataclasses.MISSING:
        value = fld.default
    elif fld.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = fld.default_factory()  # type: ignore[misc]
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "see below"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _field_lines(cls: type, prefix: str = "") -> list[tuple[str, list[str]]]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    sections: list[tuple[str, list[str]]] = []
    nested: list[tuple[str, list[str]]] = []
    for title, names in _groups(cls).items():
        rows = []
        for name in names:
            fld, tp = fields[name], hints[name]
            if dataclasses.is_dataclass(tp):
                nested += _field_lines(tp, f"{prefix}{name}.")  # type: ignore[arg-type]
                continue
            meta = fld.metadata
            facts = [f"type {_type_name(tp)}", f"default {_default_text(fld)}"]
            if meta.get("choices") is not None:
                facts.append("one of " + ", ".join(str(c) for c in meta["choices"]))
            bounds = [f"{sym} {meta[k]}" for k, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                      if meta.get(k) is not None]  # fmt: skip
            if bounds:
                facts.append(" and ".join(bounds))
            text = (meta.get("help") or "").strip()
            body = f"{text} [{'; '.join(facts)}]" if text else f"[{'; '.join(facts)}]"
            wrapped = textwrap.wrap(body, width=88) or [""]
            rows.append(f"  --{prefix}{name}")
            rows += [f"      {w}" for w in wrapped]
        if rows:
            label = title if not prefix else f"{prefix.rstrip('.')}: {title}"
            sections.append((label, rows))
    return sections + nested


def help_text(cls: type, prog: str, description: str = "", epilog: str = "") -> str:
    """The ``--help`` page of a twin, generated from its config dataclass ``cls`` (every key)."""
    parts = [
        f"usage: {prog} [--config FILE] [key=value | --key value | --key=value ...] [--debug] [--help]",
        "",
    ]
    if description.strip():
        parts += [textwrap.dedent(description).strip(), ""]
    parts += [
        "options:",
        "  --config FILE   YAML file with the parameters (keys below); command-line values override it",
        f"  --debug         show the full traceback of an error (or set {DEBUG_ENV}=1)",
        "  -h, --help      show this help and exit",
        "",
        f"parameters of {cls.__name__} (key=value, --key value or --key=value; dotted keys for nested values):",
    ]
    for title, rows in _field_lines(cls):
        parts += ["", f" {title}:"] + rows
    if epilog:
        parts += ["", textwrap.dedent(epilog).strip()]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------------------- parsing
def requested_task(argv: Sequence[str]) -> str | None:
    """The ``task`` a command line asks for (an override wins over the file), before full parsing.

    Twins serving several configs (``dino_lib.features``: images or ``regions``; ``dino_lib.attention``: maps or
    ``hipt``) use it to pick the config class.
    """
    args = parse_args(argv)
    overrides = parse_overrides(args.overrides)
    if "task" in overrides:
        return overrides["task"]
    if args.config is not None:
        return read_yaml(args.config).get("task")
    return None


def _bool_keys(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if hints[f.name] is bool]  # type: ignore[arg-type]


def _is_scheme(value: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", value) is not None


def check_inputs(cfg: Any) -> None:
    """Check what can be checked before any work: the device, every input path and the output folder.

    Raises:
        ConfigError: with the key at fault (``device``, an input path key, ``output_dir``).
    """
    from dino_lib.runtime import resolve_device
    from dino_lib.utils.rundir import check_output_dir

    if hasattr(cfg, "device"):
        resolve_device(cfg.device)
    for key in INPUT_KEYS:
        value = getattr(cfg, key, None)
        if not isinstance(value, str) or not value or _is_scheme(value):
            continue
        path = Path(value).expanduser()
        if not path.exists():
            err = ConfigError(
                f"{key}: {path} does not exist; give the path of an existing file or folder (when it is the output "
                "of an earlier step, such as region extraction before region pretraining, run that step first)"
            )
            err.key = key
            raise err
    if isinstance(getattr(cfg, "output_dir", None), str):
        check_output_dir(cfg.output_dir)


def parse_config(
    cls: type[T],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    description: str = "",
    epilog: str = "",
    check: bool = True,
) -> T:
    """Parse a twin's command line into a validated ``cls`` (``--help`` prints :func:`help_text` and exits 0).

    With ``check`` the device, the input paths and the output folder are checked too (:func:`check_inputs`).
    Errors are :class:`ConfigError` prefixed with their source (file or command line).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or f"python -m {cls.__module__.rsplit('.', 1)[0]}"
    args = parse_args(argv, _bool_keys(cls))
    if args.help:
        sys.stdout.write(help_text(cls, prog, description, epilog))
        raise SystemExit(0)
    cfg = load_config(cls, args.config, args.overrides)
    if check:
        try:
            check_inputs(cfg)
        except ConfigError as err:
            raise locate_error(err, args.config, parse_overrides(args.overrides)) from None
    return cfg


def run_folder(cfg: Any, key: str = "output_dir") -> Any:
    """The :class:`~dino_lib.utils.rundir.RunFolder` of ``cfg.<key>``; only rank 0 of a multi-process run locks."""
    from dino_lib.runtime import env_rank as launch_rank
    from dino_lib.utils.rundir import RunFolder

    return RunFolder(getattr(cfg, key), lock=launch_rank() == 0, key=key)


# -------------------------------------------------------------------------------------------------------- errors
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def format_error(prog: str, err: BaseException, hint: str = f"run with --debug or {DEBUG_ENV}=1") -> str:
    """One message: the program, the error (which names its source) and how to see the traceback."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    kind = "config error" if isinstance(err, ConfigError) else "error"
    return f"{prog}: {kind}: {text}\n({hint} for the full traceback)"


def entry(main: Callable[[list[str]], Any], prog: str, argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` as a command: errors in config or inputs become one message and exit code 2.

    ``main`` returns an exit code (an ``int``) or anything else (exit code 0). ``--debug`` (or
    ``DINO_LIB_DEBUG=1``) lets the traceback through. Under torchrun the process also exits when its launcher
    dies (:func:`dino_lib.runtime.exit_with_launcher`).
    """
    from dino_lib.runtime import exit_with_launcher

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    exit_with_launcher()
    try:
        result = main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS + (RuntimeError,) as err:
        if debug or not _is_user_error(err):
            raise
        print(format_error(prog, err), file=sys.stderr)
        return 2
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _is_user_error(err: BaseException) -> bool:
    """Config and input errors (and the tool's own clear RuntimeErrors); torch internals keep their traceback."""
    if isinstance(err, _USER_ERRORS):
        return True
    from dino_lib.train.loop import NonFiniteLossError

    return isinstance(err, NonFiniteLossError)


def notebook_errors() -> bool:
    """In IPython/Jupyter, show config and input errors as the same one message as the command line.

    Installs an IPython exception handler (the cell still fails, so papermill and nbval see the error); other
    errors keep their traceback, and ``DINO_LIB_DEBUG=1`` keeps every traceback. Called by the notebook config
    helpers; returns whether a handler was installed (False outside IPython).
    """
    if _debug_requested([]):
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks
        return False
    shell = get_ipython()
    if shell is None:
        return False

    def handler(ip: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> list[str]:
        if not _is_user_error(value):
            return ip.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        message = format_error("dino_lib", value, hint=f"set {DEBUG_ENV}=1 before starting Jupyter")
        # IPython does not display what a custom handler returns: show it as the cell's error output, which
        # Jupyter renders, nbval reports and papermill prints when the notebook fails
        ip._showtraceback(etype, value, [message])
        return [message]

    shell.set_custom_exc(_USER_ERRORS + (RuntimeError,), handler)
    return True
