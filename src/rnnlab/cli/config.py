"""``--config FILE.toml``: a command's options from a file, the command line winning.

The file's keys are the command's option names (``clip-norm`` or ``clip_norm``), and
its values are what the option would take; lists may be TOML arrays (``cells =
["srn", "lstm"]`` for ``--cells srn,lstm``). The file fills click's ``default_map``,
so an option given on the command line overrides it, and click validates both the
same way. :func:`write_resolved` writes the settings a run actually used back as
TOML, so ``--config`` on that file reruns it exactly.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import click
import tomllib

from rnnlab.cli.vocab import renamed_key
from rnnlab.errors import RnnlabError
from rnnlab.io import atomic_write_text

RESOLVED = "config.toml"


def _option_names(command: click.Command) -> dict[str, click.Parameter]:
    """Every spelling a file may use for each option: ``clip-norm``, ``clip_norm``."""
    names: dict[str, click.Parameter] = {}
    for param in command.params:
        if param.name in (None, "config"):
            continue
        if isinstance(param, click.Argument):  # TASK -> "task" as well as "task_name"
            names[(param.metavar or param.name).lower()] = param
        names[param.name] = param
        names[param.name.replace("_", "-")] = param
        for opt in param.opts:
            if opt.startswith("--"):
                names[opt[2:]] = param
                names[opt[2:].replace("-", "_")] = param
    return names


def _command_names() -> set[str]:
    from rnnlab.cli import _COMMANDS

    return set(_COMMANDS)


def _as_option_value(param: click.Parameter, value: Any, key: str, path: Path) -> Any:
    if isinstance(value, dict):
        raise RnnlabError(f"{path}: {key} must be a value, not a table")
    if param.multiple:
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if isinstance(value, list):  # comma-separated options such as --cells, --lengths
        return ",".join(str(v) for v in value)
    return value


def load_config(ctx: click.Context, path: Path) -> dict[str, Any]:
    """Read ``path`` and return the ``default_map`` for ``ctx.command``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RnnlabError(f"no config file at {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RnnlabError(f"cannot read config file {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise RnnlabError(f"{path} is not valid TOML: {err}") from err
    # A file may hold settings for several commands in tables named after them.
    section = data.get(ctx.command.name) if isinstance(data.get(ctx.command.name), dict) else None
    if section is not None:
        data = {**{k: v for k, v in data.items() if not isinstance(v, dict)}, **section}
    names = _option_names(ctx.command)
    default_map: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in _command_names():
            continue  # another command's table
        old = renamed_key(ctx.command, key, value) if key not in names else None
        if old is not None:  # an old spelling: k-test = 2 is task-param = ["k_test=2"]
            key, value = old
        if key not in names:
            known = sorted({p.name.replace("_", "-") for p in names.values() if p.name})
            raise RnnlabError(f"{path}: unknown setting {key!r} for rnnlab {ctx.command.name}; "
                              f"known: {', '.join(known)}")
        param = names[key]
        value = _as_option_value(param, value, key, path)
        if param.multiple:  # several keys may feed one repeatable option
            value = [*default_map.get(param.name, []), *value]
        default_map[param.name] = value
    return default_map


def _load_callback(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), **load_config(ctx, value)}


def config_option(command: click.Command) -> click.Command:
    """Add ``--config FILE.toml`` to ``command`` (apply below ``@click.command``)."""
    return click.option(
        "--config", type=click.Path(dir_okay=False, path_type=Path), callback=_load_callback,
        is_eager=True, expose_value=False,
        help="TOML file of option values; options given on the command line win.")(command)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_toml(settings: dict[str, Any], comment: str = "") -> str:
    """Flat ``settings`` as TOML (``None`` values are left out: TOML has no null)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"{key.replace('_', '-')} = {_toml_value(value)}"
              for key, value in settings.items() if value is not None]
    return "\n".join(lines) + "\n"


def resolved_settings(ctx: click.Context) -> dict[str, Any]:
    """The command's option values as they were resolved (file, command line, defaults)."""
    skip = {"config", "json", "as_json", "quiet", "resume", "out"}
    return {_file_key(ctx.command, name): value for name, value in ctx.params.items()
            if name not in skip}


def _file_key(command: click.Command, name: str) -> str:
    """The key a file uses for parameter ``name``: its option's long name (``clip-norm``
    even where the parameter is called ``clip``)."""
    for param in command.params:
        longs = [opt for opt in param.opts if opt.startswith("--")]
        if param.name == name and isinstance(param, click.Option) and longs:
            return longs[0][2:]
    return name


def write_resolved(ctx: click.Context, folder: str | os.PathLike,
                   extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.toml`` into ``folder``: what ``--config`` needs to rerun this command."""
    settings = {**resolved_settings(ctx), **(extra or {})}
    text = to_toml(settings, comment=f"rnnlab {ctx.command.name}: the settings this run used.\n"
                   f"Rerun with: rnnlab {ctx.command.name} --config {RESOLVED}")
    return atomic_write_text(Path(folder) / RESOLVED, text)
