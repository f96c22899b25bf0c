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


#: Bounds on what one document may be or expand to (config and campaign files are small;
#: anything past these is a mistake or an attack: alias bombs, runaway nesting).
MAX_CHARS = 1_000_000
MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_ALIASES = 1_000


def decode(data: bytes, file: str) -> str:
    """The text of a YAML file's bytes: UTF-8 (a BOM is dropped). UTF-16/32 (by their BOM),
    other encodings and binary files raise :class:`YamlSyntaxError` with the line of the
    first bad byte."""
    if len(data) > 4 * MAX_CHARS:
        raise YamlSyntaxError(f"the file is too large ({len(data):,} bytes; at most {MAX_CHARS:,})", None, None)
    for bom, name in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                      (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if data.startswith(bom):
            raise YamlSyntaxError(f"the file is {name} text; save it as UTF-8", 1, 1)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        at = e.start if nul < 0 else min(nul, e.start)
        line, col = _line_col(data, at)
        what = "a binary file, not text" if 0 <= nul <= e.start else \
            f"not UTF-8 text (byte 0x{data[e.start]:02x}; save the file as UTF-8)"
        raise YamlSyntaxError(f"the file is {what}", line, col) from None
    if nul >= 0:
        line, col = _line_col(data, nul)
        raise YamlSyntaxError("the file is a binary file, not text (a NUL byte)", line, col)
    return text


def _line_col(data: bytes, at: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, at) + 1
    return line, at - (data.rfind(b"\n", 0, at) + 1) + 1


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses documents nested deeper than MAX_DEPTH or with more
    than MAX_ALIASES aliases, before anything is built from them."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML's stubs leave it untyped
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases", mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load(text: str, file: str) -> Source:
    """Parse ``text``; raise :class:`YamlSyntaxError` with a position on bad YAML, and on a
    document past the bounds (MAX_CHARS, MAX_DEPTH, MAX_ALIASES, and MAX_NODES values once
    aliases and merge keys are expanded)."""
    if len(text) > MAX_CHARS:
        raise YamlSyntaxError(f"the file is too large ({len(text):,} characters; at most {MAX_CHARS:,})", None, None)
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or str(e)
        if e.context:
            problem = f"{problem} ({e.context})"
        _raise(problem, mark)
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (control characters)
        line = text.count("\n", 0, e.position) + 1
        col = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise YamlSyntaxError(f"YAML syntax error: character U+{int(e.character):04X} is not allowed in YAML text",
                              line, col) from None
    except yaml.YAMLError as e:  # pragma: no cover - every parser error is marked
        raise YamlSyntaxError(str(e), None, None) from None
    finally:
        if loader is not None:
            loader.dispose()
    src = Source(file=file, data=None)
    if node is None:
        src.data = None
        return src
    _check_expansion(node)
    src.positions[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
    constructor = yaml.SafeLoader("")
    try:
        src.data = _convert(node, (), src, constructor)
    except yaml.MarkedYAMLError as e:
        _raise(e.problem or str(e), e.problem_mark)
    return src


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that expands (through aliases and merge keys) past MAX_NODES
    values or MAX_DEPTH levels, or that contains itself; counted once per distinct node."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, depth)
    active: set[int] = set()

    def visit(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            _raise("an alias refers to the node that contains it (a recursive document)", node.start_mark)
        active.add(key)
        count, depth = 1, 0
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                children += [k, v]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        for child in children:
            n, d = visit(child)
            count += n
            depth = max(depth, d + 1)
            if count > MAX_NODES or depth > MAX_DEPTH:
                _raise(f"the document expands to more than {MAX_NODES:,} values or {MAX_DEPTH} levels "
                       "(aliases)", child.start_mark)
        active.discard(key)
        sizes[key] = (count, depth)
        return count, depth

    visit(root)


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
            if not isinstance(key_node, yaml.ScalarNode):
                _raise("a key must be a plain value", key_node.start_mark)
            key = _construct(constructor, key_node)
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
    return _construct(constructor, node)


def _construct(constructor: yaml.SafeLoader, node: yaml.Node) -> Any:
    """A scalar's value; a value PyYAML cannot build (a date like 2024-13-45, an integer of
    thousands of digits) is a YamlSyntaxError at the value, not a ValueError."""
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.MarkedYAMLError:
        raise
    except Exception as e:  # noqa: BLE001 - PyYAML's constructors fail in many ways on odd tags (!!timestamp z)
        return _raise(f"cannot read the value {_short(node)}: {e or type(e).__name__}", node.start_mark)


def _short(node: yaml.Node) -> str:
    value = node.value if isinstance(node.value, str) else ""
    return repr(value if len(value) <= 40 else value[:37] + "...")
