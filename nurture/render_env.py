"""The Jinja side of rendering: a sandboxed, strict environment over the templates folder,
and template errors turned into ``file:line: message`` that a marketer can act on.

Beside it, the environments for one-line templates outside a mail: follow-up notes (strict,
filter ``ordinal``) and subject lines shown to reps (lenient), see :func:`render_snippet`."""

from __future__ import annotations

import functools
import os
import re
import traceback
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError

from nurture.errors import TemplateError
from nurture.models import Campaign, Step
from nurture.render_bounds import BoundedSandbox, TemplateTooBig, bounded_render

_UNDEFINED_RE = re.compile(r"^'([^']+)' is undefined$")


def _missing(e: jinja2.TemplateNotFound, default: str) -> str:
    """The name of the template that was not found (``default`` when Jinja does not say)."""
    return e.name if isinstance(e.name, str) and e.name else default


class MissingTemplate(TemplateError):
    """The step's template (or one it extends or includes) does not exist."""


class SubjectError(TemplateError):
    """The step's subject line (a template in the campaign file) does not render."""

    def __init__(self, message: str, *, file: str, line: int | None, column: int | None,
                 field: str, variable: str | None = None) -> None:
        self.column = column
        self.field = field
        super().__init__(message, template=file, line=line, variable=variable)

    def __str__(self) -> str:
        where = self.template or ""
        if self.line:
            where += f":{self.line}" + (f":{self.column}" if self.column else "")
        return f"{where}: {self.field}: {self.message}"


class Namespace(dict[str, Any]):
    """A dict that knows its variable name, so undefined errors say ``'contact.compnay'``."""

    __slots__ = ("_nurture_path",)

    def __init__(self, path: str, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self._nurture_path = path


class _Undefined(jinja2.StrictUndefined):
    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if isinstance(obj, Namespace) and not self._undefined_hint and isinstance(self._undefined_name, str):
            return f"'{obj._nurture_path}.{self._undefined_name}' is undefined"
        return super()._undefined_message


class Templates:
    """Compiled templates of one folder (cached; edits need a restart) and subject lines."""

    def __init__(self, templates_dir: str | os.PathLike[str]) -> None:
        self.root = str(templates_dir)
        self.env = BoundedSandbox(
            loader=jinja2.FileSystemLoader(self.root),
            undefined=_Undefined,
            autoescape=jinja2.select_autoescape(["html", "htm"], default_for_string=False),
            auto_reload=False,
            cache_size=1000,
        )
        self._subjects: dict[str, jinja2.Template] = {}
        self._pure: dict[str, bool] = {}

    def display(self, name_or_path: str) -> str:
        """A template path as the user wrote it: relative to the working directory if inside it."""
        path = name_or_path if os.path.isabs(name_or_path) else os.path.join(self.root, name_or_path)
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else path

    def get(self, name: str) -> jinja2.Template:
        """The compiled template ``name``; :class:`TemplateError` if missing or not valid Jinja."""
        try:
            return self.env.get_template(name)
        except jinja2.TemplateNotFound as e:
            raise MissingTemplate(f"template not found: {self.display(_missing(e, name))}",
                                  template=self.display(name)) from None
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(e.message or "syntax error", template=self.display(e.filename or name),
                                line=e.lineno) from None

    def run(self, template: jinja2.Template, ctx: Mapping[str, Any]) -> str:
        """Render; any failure becomes a :class:`TemplateError` at the template line that caused it."""
        try:
            return bounded_render(lambda: template.generate(ctx))
        except jinja2.TemplateNotFound as e:
            file, line = self._frame(e.__traceback__, template)
            raise MissingTemplate(f"template not found: {self.display(_missing(e, template.name or ''))}",
                                  template=file, line=line) from None
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(e.message or "syntax error", template=self.display(e.filename or e.name or ""),
                                line=e.lineno) from None
        except Exception as e:  # anything a template can raise: report where, never a traceback
            file, line = self._frame(e.__traceback__, template)
            message = _message(e)
            m = _UNDEFINED_RE.match(message)
            raise TemplateError(message, template=file, line=line,
                                variable=m.group(1) if m else None) from None

    def subject(self, campaign: Campaign, step: Step, index: int, ctx: Mapping[str, Any]) -> str:
        """The rendered subject line; errors point at ``steps[index].subject`` in the campaign file."""
        return self.line(campaign, step, step.subject, f"steps[{index}].subject", ctx)

    def line(self, campaign: Campaign, step: Step, source: str, field_path: str, ctx: Mapping[str, Any]) -> str:
        """A one-line template of the campaign file (subject, preheader, footer text) rendered
        unescaped; errors are :class:`SubjectError` pointing at ``field_path`` in the file."""
        if "{" not in source and "\n" not in source and "\r" not in source:
            return source  # plain text on one line (most footer lines): Jinja would give it back as is
        try:
            tpl = self._subjects.get(source)
            if tpl is None:
                tpl = self._subjects[source] = self.env.from_string(source)
            return bounded_render(lambda: tpl.generate(ctx))
        except Exception as e:
            line, col = _where(campaign, step, field_path)
            message = _message(e)
            m = _UNDEFINED_RE.match(message)
            raise SubjectError(message, file=campaign.path, line=line, column=col, field=field_path,
                               variable=m.group(1) if m else None) from None

    def prints_values_only(self, name: str) -> bool:
        """True when ``name`` (with what it extends and includes) uses a contact's values only
        by printing them: ``{{ contact.company }}``, ``{{ first_name or "there" }}``, never in
        a test, filter, loop or assignment. Such a template renders the same with placeholders
        in place of the values, which lets :class:`nurture.render.Renderer` skip a check."""
        known = self._pure.get(name)
        if known is None:
            try:
                known = self._check_pure(name, set())
            except Exception:  # unreadable or invalid: the careful path reports it
                known = False
            self._pure[name] = known
        return known

    def _check_pure(self, name: str, seen: set[str]) -> bool:
        if name in seen:
            return True
        seen.add(name)
        loader = self.env.loader
        if loader is None:  # nothing to read the template from: not known to be pure
            return False
        source, _, _ = loader.get_source(self.env, name)
        tree = self.env.parse(source, name)
        if not _pure(tree, output=False):
            return False
        for ref in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
            if not isinstance(ref, (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
                continue  # find_all yields only these; the check tells mypy
            target = ref.template
            names = target.value if isinstance(target, nodes.Const) else None
            for n in [names] if isinstance(names, str) else (names or [None]):
                if not isinstance(n, str) or not self._check_pure(n, seen):
                    return False
        return True

    def _frame(self, tb: Any, template: jinja2.Template) -> tuple[str, int | None]:
        """The innermost template frame of a traceback (Jinja rewrites them to template lines)."""
        root = os.path.abspath(self.root)
        found: tuple[str, int | None] = (self.display(template.filename or template.name or ""), None)
        for frame in traceback.extract_tb(tb):
            if frame.filename and os.path.abspath(frame.filename).startswith(root + os.sep):
                found = (self.display(frame.filename), frame.lineno)
        return found


# -- one-line templates outside a mail: follow-up notes, subject lines for reps ------------------

def ordinal(n: int) -> str:
    """3 → "3rd", 11 → "11th", 22 → "22nd" (the ``ordinal`` filter of follow-up notes)."""
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


_note_env = BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
_note_env.filters["ordinal"] = ordinal
_lenient_env = BoundedSandbox(undefined=jinja2.ChainableUndefined, autoescape=False)


@functools.lru_cache(maxsize=512)
def _snippet(template: str, *, lenient: bool) -> jinja2.Template:
    """Compiling costs ~1 ms; rules and subjects are few, so keep them compiled."""
    return (_lenient_env if lenient else _note_env).from_string(template)


def render_snippet(template: str, variables: Mapping[str, Any], *, lenient: bool = False) -> str:
    """Render a one-line template in a sandbox, unescaped.

    Strict (a follow-up note): undefined names are errors. ``lenient`` (a subject line outside
    its mail): undefined names render empty. A Jinja error (syntax, undefined, sandbox) becomes a
    :class:`TemplateError` with Jinja's message.
    """
    try:
        compiled = _snippet(template, lenient=lenient)
        return bounded_render(lambda: compiled.generate(**variables))
    except jinja2.TemplateError as e:
        raise TemplateError(str(e), variable=getattr(e, "name", None)) from None
    except TemplateTooBig as e:
        raise TemplateError(str(e)) from None


#: Variables that never hold a contact's value (so any use of them is fine).
_CONSTANT_ROOTS = frozenset({"campaign", "sender", "super"})


def _chain(node: nodes.Node) -> tuple[str, int] | None:
    """``contact.company`` → ("contact", 1); None for dynamic lookups such as ``contact[key]``."""
    depth = 0
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getitem) and not isinstance(node.arg, nodes.Const):
            return None
        node, depth = node.node, depth + 1
    return (node.name, depth) if isinstance(node, nodes.Name) else None


def _pure(node: nodes.Node, *, output: bool) -> bool:
    if isinstance(node, nodes.Output):
        return all(_pure(n, output=True) for n in node.nodes)
    if isinstance(node, nodes.Or) and output:
        return _pure(node.left, output=True) and _pure(node.right, output=True)
    if isinstance(node, nodes.Name) and node.ctx != "load":
        return True  # an assignment target, not a read
    if isinstance(node, (nodes.Name, nodes.Getattr, nodes.Getitem)):
        chain = _chain(node)
        if chain is None:
            return False
        root, depth = chain
        if root in _CONSTANT_ROOTS or (root == "step" and isinstance(node, nodes.Getattr)
                                       and node.attr == "id" and depth == 1):
            return True
        # Printed as is: a plain name, or one field of contact / step.
        return output and (depth == 0 and root not in ("contact", "step") or depth == 1)
    return all(_pure(child, output=False) for child in node.iter_child_nodes())


def _message(e: Exception) -> str:
    message = getattr(e, "message", None) or str(e) or type(e).__name__
    if isinstance(e, SecurityError):
        message = re.sub(r" of '\w+' object", "", message).rstrip(".").replace(" is unsafe", "")
        message += " is not allowed (templates run in a sandbox)"
    return message


def _where(campaign: Campaign, step: Step, field_path: str) -> tuple[int | None, int | None]:
    where = getattr(campaign, "where", None)
    if where is not None:
        line, col = where(field_path)
        if line:
            return line, col
    return step.line, None
