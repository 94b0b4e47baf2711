"""Reading the YAML files people write (campaigns, devices, benchmark specs), with clear errors.

One place, so every file kind reports an unreadable file or a syntax error the same way: naming
the file and, for syntax errors, the line and column.

The loader is PyYAML's safe loader with four guards, because these files are hand-edited and a
file must never crash the program or be silently misread:

* a duplicate key is an error naming the key and both lines (YAML itself says "last one wins",
  which hides a typo such as two ``seed:`` lines);
* nesting deeper than :data:`MAX_DEPTH` is refused before Python's recursion limit is hit;
* a document whose aliases expand to more than :data:`MAX_NODES` nodes (an "alias bomb") is
  refused before anything walks the expanded value;
* ``1e30``-style numbers (no dot, no exponent sign) are floats, as in YAML 1.2 and as a person
  means them, instead of strings.

:func:`read_yaml_document` also returns the line of every key, so later validation errors can
point at the line to fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from autolab.exceptions import ConfigError

#: Deepest nesting accepted (campaign files need about 5 levels).
MAX_DEPTH = 64
#: Most nodes a document may expand to once aliases are resolved.
MAX_NODES = 100_000

#: A key path into a document: mapping keys (as written) and list indices.
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML file and where each key was written.

    Attributes:
        data: The parsed value (``None`` for an empty file).
        lines: Key path -> 1-based line of the key (list items: line of the item).
        source: The file, for messages.
    """

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    source: str = ""

    def line_of(self, path: KeyPath) -> int | None:
        """Line of ``path``, or of its closest enclosing key that has one."""
        keys = tuple(str(k) if not isinstance(k, int) else k for k in path)
        for n in range(len(keys), 0, -1):
            line = self.lines.get(keys[:n])
            if line is not None:
                return line
        return None


class _GuardedLoader(yaml.SafeLoader):
    """Safe loader that refuses absurd nesting (the composer recurses once per level)."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ConfigError(f"line {mark.line + 1}: nested more than {MAX_DEPTH} levels "
                                  "deep; a campaign file needs a handful")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_GuardedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _expanded_size(node: Node, memo: dict[int, int]) -> int:
    """Nodes ``node`` expands to, counting each alias use (memoized, so cheap for bombs)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    total = 1
    if isinstance(node, MappingNode):
        total += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, SequenceNode):
        total += sum(_expanded_size(v, memo) for v in node.value)
    memo[id(node)] = total
    return total


def _index(node: Node, path: KeyPath, lines: dict[KeyPath, int], seen: set[int]) -> None:
    """Record the line of every key and refuse duplicate keys (each node visited once)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in first:
                raise ConfigError(f"duplicate key {key!r} at lines {first[key]} and {line}; "
                                  "YAML would silently keep the last one, remove one of them")
            first[key] = line
            lines.setdefault((*path, key), line)
            _index(value_node, (*path, key), lines, seen)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault((*path, i), item.start_mark.line + 1)
            _index(item, (*path, i), lines, seen)


def parse_yaml_text(text: str, source: str = "<yaml>") -> YamlDocument:
    """Parse YAML text with the guards of this module.

    Raises:
        ConfigError: Syntax error (with line and column), duplicate key, too deep, too large.
    """
    try:
        loader = _GuardedLoader(text)  # the reader refuses non-printable characters here
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from err
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, {}, source)
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise ConfigError(f"{source}: the document expands to more than {MAX_NODES} values "
                              "(aliases repeated inside aliases?); refusing to expand it")
        lines: dict[KeyPath, int] = {}
        _index(node, (), lines, set())
        data = loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(err, 'problem', err)}"
                          ) from err
    except RecursionError as err:  # a guard above should catch it first; never a traceback
        raise ConfigError(f"{source}: nested too deeply to read") from err
    except ConfigError as err:
        msg = str(err)
        raise ConfigError(msg if msg.startswith(source) else f"{source}: {msg}") from err
    finally:
        loader.dispose()
    return YamlDocument(data, lines, source)


def read_yaml_document(path: str | Path, what: str) -> YamlDocument:
    """Read and parse a YAML file, keeping the line of every key.

    Args:
        path: The file.
        what: What kind of file it is, for messages (``"campaign file"``).

    Raises:
        ConfigError: The file cannot be read, or is not valid YAML (with line and column), or
            has a duplicate key, absurd nesting or an alias bomb.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {what} {p}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"cannot read {what} {p}: not UTF-8 text ({err.reason})") from err
    return parse_yaml_text(text, str(p))


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file (see :func:`read_yaml_document` for the guards).

    Args:
        path: The file.
        what: What kind of file it is, for messages (``"campaign file"``).

    Raises:
        ConfigError: The file cannot be read, or is not valid YAML (with line and column).
    """
    return read_yaml_document(path, what).data


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'n_init'?"`` when ``word`` is a likely typo of a choice, else ``""``."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
