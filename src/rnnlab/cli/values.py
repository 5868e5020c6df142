"""Typed ``KEY=VALUE`` options: one conversion for ``--task-param`` and ``--set``."""

from __future__ import annotations

import types
import typing
from typing import Any

import click

from rnnlab.errors import RnnlabError


def parse_value(text: str, kind: Any, key: str, option: str) -> Any:
    """Convert ``text`` to the field type ``kind`` (int, float, bool, str, optional).

    ``option`` names the flag the pair came from (``--task-param``, ``--set``) so the
    error says where the bad value was typed.
    """
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", "") and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        kind = options[0] if len(options) == 1 else str
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise RnnlabError(f"{option} {key}={text}: expected true or false")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise RnnlabError(f"{option} {key}={text}: expected "
                              f"{'a whole number' if kind is int else 'a number'}") from None
    return text


class FloatGrid(click.FloatRange):
    """A number, or a comma-separated grid of numbers (``1e-3,5e-3``), each in range;
    always converted to a tuple. Still a float option, so ``--lr`` takes the same kind
    of value in every command."""

    name = "float[,float...]"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        parts = [part.strip() for part in str(value).split(",")]
        if not all(parts):
            self.fail(f"{value!r} is not a number or a comma-separated list of numbers",
                      param, ctx)
        convert = super().convert  # zero-argument super() is not available in a genexpr
        return tuple(float(convert(part, param, ctx)) for part in parts)

