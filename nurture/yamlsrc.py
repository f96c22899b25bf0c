"""YAML with positions: load a document and remember where every key and value sits,
so that config and campaign errors can say ``file:line:col: field: message``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml

Path = tuple[str | int, ...]


@dataclass
class Source:
    """A parsed YAML document plus the (line, column) of every path in it (1-based)."""

    file: str
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path) -> tuple[int | None, int | None]:
        """Position of ``path``, or of its nearest existing parent."""
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), (None, None))


def field_name(path: Path) -> str:
    """``("steps", 1, "wait")`` → ``"steps[1].wait"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def load(text: str, file: str) -> Source:
    """Parse ``text``; raise :class:`YamlSyntaxError` with a position on bad YAML."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or str(e)
        if e.context:
            problem = f"{problem} ({e.context})"
        _raise(problem, mark)
    except yaml.YAMLError as e:  # pragma: no cover - every parser error is marked
        raise YamlSyntaxError(str(e), None, None) from None
    src = Source(file=file, data=None)
    if node is None:
        src.data = None
        return src
    src.positions[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
    constructor = yaml.SafeLoader("")
    try:
        src.data = _convert(node, (), src, constructor)
    except yaml.MarkedYAMLError as e:
        _raise(e.problem or str(e), e.problem_mark)
    return src


def _raise(problem: str, mark: yaml.Mark | None) -> NoReturn:
    line = mark.line + 1 if mark else None
    col = mark.column + 1 if mark else None
    raise YamlSyntaxError(f"YAML syntax error: {problem}", line, col)


def _convert(node: yaml.Node, path: Path, src: Source, constructor: yaml.SafeLoader) -> Any:
    src.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        constructor.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                _raise("a key must be a plain value", key_node.start_mark)
            child = (*path, str(key))
            src.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in out:
                _raise(f'duplicate key "{key}"', key_node.start_mark)
            out[str(key) if not isinstance(key, (int, float, bool)) or key is None else key] = _convert(
                value_node, child, src, constructor
            )
            # Point at the value when it is a scalar on the same line: "wait: 3 dayz" → the value.
            if isinstance(value_node, yaml.ScalarNode):
                src.positions[child] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), src, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)
