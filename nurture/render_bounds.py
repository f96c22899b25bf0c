"""Bounds on what a template may build: templates are trusted, but not unbounded.

:class:`BoundedSandbox` is Jinja's sandbox plus limits, so a template such as
``{{ ('a' * 1000000) * 1000 }}`` fails at once with a clear :class:`TemplateTooBig` instead of
building a gigabyte string (and hanging ``preview`` or the sender):

- a string, list or number that ``*``, ``**``, ``+`` or a method call (``ljust``, ``format`` …)
  would make longer than :data:`MAX_STRING` characters (or a number wider than 4,096 bits) is
  refused before it is built;
- the integer arguments of calls and filters (``center(10**9)``, ``range(...)``) are capped;
- each render has a budget of loop steps (every ``range``) and a deadline of
  :data:`MAX_SECONDS`, checked on every call, attribute and operator;
- the rendered text is at most :data:`MAX_OUTPUT` characters.
"""

from __future__ import annotations

import contextvars
import functools
import re
import string
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

MAX_STRING = 1_000_000
MAX_OUTPUT = 2_000_000
MAX_SECONDS = 2.0
MAX_STEPS = 1_000_000
_MAX_INT_BITS = 4096


class TemplateTooBig(RuntimeError):
    """A template went past a bound (size, loop steps or time)."""


class _Budget:
    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_SECONDS
        self.steps = MAX_STEPS


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("nurture_render_budget", default=None)


def _tick(steps: int = 0) -> None:
    b = _budget.get()
    if b is None:
        return
    b.steps -= steps
    if b.steps < 0:
        raise TemplateTooBig(f"the template runs more than {MAX_STEPS:,} loop steps")
    if time.monotonic() > b.deadline:
        raise TemplateTooBig(f"the template took longer than {MAX_SECONDS:g} s to render")


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, list, tuple)):
        return len(value)
    return 0


def _check_int(n: Any) -> None:
    if isinstance(n, int) and not isinstance(n, bool) and n.bit_length() > _MAX_INT_BITS:
        raise TemplateTooBig("the template makes a number too large")


def _check_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    for a in (*args, *kwargs.values()):
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_STRING:
            raise TemplateTooBig(f"an argument of {a:,} is larger than the {MAX_STRING:,} a template may use")


def _check_result(value: Any) -> Any:
    if _size(value) > MAX_STRING:
        raise TemplateTooBig(f"the template builds a value longer than {MAX_STRING:,} characters")
    _check_int(value)
    return value


def _bounded_range(*args: int) -> range:
    _check_args(args, {})
    r = range(*args)
    _tick(len(r))
    return r


def _bounded_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_args(args[1:], kwargs)  # the first is the value filtered
        _tick()
        return _check_result(fn(*args, **kwargs))
    return wrapper


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox with the bounds above; :func:`bounded_render` runs a template under them."""

    intercepted_binops = frozenset(["*", "**", "+", "//", "%"])

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        self.globals.pop("lipsum", None)  # pages of filler text: no use in a mail, easy to blow up
        for name, fn in list(self.filters.items()):
            if getattr(fn, "jinja_pass_arg", None) is None:  # context/environment filters keep theirs
                self.filters[name] = _bounded_filter(fn)

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        _tick()
        if operator_ == "*":
            count = right if isinstance(right, int) else left if isinstance(left, int) else None
            seq = left if count is right else right
            if count is not None and _size(seq) * max(0, count) > MAX_STRING:
                raise TemplateTooBig(f"the template builds a value longer than {MAX_STRING:,} characters")
        if operator_ == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and abs(left).bit_length() * right > _MAX_INT_BITS:
                raise TemplateTooBig("the template makes a number too large")
        if operator_ == "+" and _size(left) + _size(right) > MAX_STRING:
            raise TemplateTooBig(f"the template builds a value longer than {MAX_STRING:,} characters")
        if operator_ == "%":
            _check_format_string(left)
        return _check_result(super().call_binop(context, operator_, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        if attribute in ("format", "format_map"):
            _check_format_string(obj)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _tick()
        _check_args(args, kwargs)
        return _check_result(super().call(__context, __obj, *args, **kwargs))


_WIDTH = re.compile(r"\d{7,}")


def _check_format_string(fmt: Any) -> None:
    """``"{:>1000000000}".format(x)`` and ``"%2000000000d" % x``: the width is in the format
    string, not an argument; refuse any run of 7+ digits in a format spec (a width of a million)."""
    if not isinstance(fmt, str):
        return
    specs: list[str] = []
    try:
        specs = [spec or "" for _, _, spec, _ in string.Formatter().parse(fmt)]
    except ValueError:
        pass
    specs += re.findall(r"%[^a-zA-Z%]*", fmt)
    if any(_WIDTH.search(spec) for spec in specs):
        raise TemplateTooBig("a format width in the template is larger than a template may use")


def bounded_render(render: Callable[[], Iterator[str]]) -> str:
    """Join what ``render()`` yields (a template's ``generate``), under a fresh budget and
    :data:`MAX_OUTPUT`; :class:`TemplateTooBig` past a bound."""
    token = _budget.set(_Budget())
    try:
        out: list[str] = []
        total = 0
        for chunk in render():
            total += len(chunk)
            if total > MAX_OUTPUT:
                raise TemplateTooBig(f"the rendered text is longer than {MAX_OUTPUT:,} characters")
            out.append(chunk)
        _tick()
        return "".join(out)
    finally:
        _budget.reset(token)

