"""The user's code: which frames are theirs, their lines, and the names they use.

A finding points at the innermost line of the user's code (the line inside the loop
or the ``forward`` that does it, not ``train()`` at the bottom of the script) and
phrases its fix in the script's own names: ``self.hidden`` when the state lives in the
module, ``hidden`` when it is a variable of the loop.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from types import FrameType

from rnnlab.doctor.findings import Location

_LINES: dict[str, list[str]] = {}


def source_lines(filename: str) -> list[str]:
    """The lines of ``filename`` (cached; empty when it cannot be read)."""
    if filename not in _LINES:
        try:
            _LINES[filename] = Path(filename).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            _LINES[filename] = []
    return _LINES[filename]


def source_line(filename: str, lineno: int) -> str:
    lines = source_lines(filename)
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


class UserCode:
    """Tells the user's frames from library frames."""

    def __init__(self, files: list[str] | None) -> None:
        self.files = {str(Path(f).resolve()) for f in (files or [])}
        self._known: dict[str, bool] = {}

    def is_user(self, filename: str) -> bool:
        known = self._known.get(filename)
        if known is None:
            known = not filename.startswith("<") and (
                filename in self.files or str(Path(filename).resolve()) in self.files)
            self._known[filename] = known
        return known

    def frames(self, depth: int = 1) -> list[FrameType]:
        """The user's frames on the current stack, innermost first."""
        found = []
        frame: FrameType | None = sys._getframe(depth + 1)
        while frame is not None:
            if self.is_user(frame.f_code.co_filename):
                found.append(frame)
            frame = frame.f_back
        return found

    @staticmethod
    def locations(frames: list[FrameType]) -> list[Location]:
        return [Location(f.f_code.co_filename, f.f_lineno,
                         source_line(f.f_code.co_filename, f.f_lineno)) for f in frames]


def _calls(code: str) -> list[ast.Call]:
    text = code.strip()
    if text.endswith(":"):
        text += " pass"
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def call_argument(code: str, position: int) -> tuple[str, str] | None:
    """``(callee, argument)`` of the first call on the line with an argument at
    ``position`` (or an ``hx``/``h0``/``state``/``hidden`` keyword), as written."""
    for call in _calls(code):
        if len(call.args) > position:
            return ast.unparse(call.func), ast.unparse(call.args[position])
        for kw in call.keywords:
            if kw.arg in ("hx", "h0", "state", "hidden"):
                return ast.unparse(call.func), ast.unparse(kw.value)
    return None


def callee_object(code: str) -> str | None:
    """``model`` for a line like ``out = model(x)`` (the object whose call it is)."""
    for call in _calls(code):
        func = call.func
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute) and func.attr == "forward":
            return ast.unparse(func.value)
    return None


def state_holder(frames: list[FrameType]) -> tuple[str, int] | None:
    """The name under which the script keeps the state handed to the layer, and the
    index of the frame where that name lives: follows a function parameter out to the
    caller that passed it (``forward(self, x, h)`` called as ``model(x, hidden)``)."""
    position = 1
    for i, frame in enumerate(frames):
        found = call_argument(source_line(frame.f_code.co_filename, frame.f_lineno), position)
        if found is None:
            return None
        _, expr = found
        code = frame.f_code
        params = list(code.co_varnames[:code.co_argcount])
        if expr in params and i + 1 < len(frames):
            position = params.index(expr) - (1 if params and params[0] == "self" else 0)
            if position < 0:
                return expr, i
            continue
        return expr, i
    return None


def assignment_lines(filename: str, name: str, pattern: str) -> list[Location]:
    """Lines of ``filename`` that assign ``name`` from an expression matching
    ``pattern`` (e.g. ``.detach()``)."""
    target = re.escape(name)
    rx = re.compile(rf"^\s*(?:[\w\s,().]*,\s*)?\(?{target}\)?\s*(?:,[^=]*)?=(?!=)(.*)$")
    found = []
    for i, line in enumerate(source_lines(filename), start=1):
        m = rx.match(line)
        if m and re.search(pattern, m.group(1)):
            found.append(Location(filename, i, line))
    return found


def defines(filename: str, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` defined as a function or method in ``filename``."""
    text = "\n".join(source_lines(filename))
    for name in names:
        if re.search(rf"^\s*def\s+{name}\s*\(", text, re.M):
            return name
    return None
