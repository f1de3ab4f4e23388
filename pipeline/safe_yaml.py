"""Load the YAML Pinotage reads (configuration, profiles, kubeconfigs) as plain data only.

``yaml.safe_load`` already refuses ``!!python/...`` objects, but it still takes duplicate keys
(the last one wins, silently), nests until Python's recursion limit, expands alias bombs,
builds integers of any length and keys that are lists or mappings. This loader refuses each,
as ``BadInput`` naming the file and line: a file Pinotage reads holds settings, not programs.
"""

from __future__ import annotations

from typing import Any

import yaml

from pipeline.errors import BadInput

MAX_DEPTH = 64
MAX_ALIASES = 64
MAX_INT_DIGITS = 24
PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{kind}"
                       for kind in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp"))


class _Refused(yaml.YAMLError):
    def __init__(self, mark, problem: str):
        super().__init__(problem)
        self.problem_mark = mark
        self.problem = problem


class _Loader(yaml.SafeLoader):
    """A safe loader that also refuses what no Pinotage file needs (see the module docstring)."""

    any_tag = False  # True for Jenkins Job Builder YAML, whose own tags (!j2:, !include-raw:) JJB reads

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(self.peek_event().start_mark, f"more than {MAX_ALIASES} aliases")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(self.peek_event().start_mark, f"nested deeper than {MAX_DEPTH} levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node.tag not in PLAIN_TAGS and not self.any_tag:
            tag = node.tag if len(node.tag) <= 60 else node.tag[:60] + "…"
            raise _Refused(node.start_mark, f"the tag {tag} is not allowed here (plain values only)")
        if node.tag.endswith(":int") and sum(c.isdigit() for c in node.value) > MAX_INT_DIGITS:
            raise _Refused(node.start_mark, f"a number of more than {MAX_INT_DIGITS} digits")
        return node

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        first_line: dict[str, int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise _Refused(key.start_mark, "a key must be a plain value, not a list or a mapping")
            if key.value in first_line:
                raise _Refused(key.start_mark, f"duplicate key {_short(key.value)!r}"
                                               f" (first given on line {first_line[key.value]})")
            first_line[key.value] = key.start_mark.line + 1
        return node


class _AnyTagLoader(_Loader):
    any_tag = True


def compose(text: str, *, where: str, quote: bool = True, any_tag: bool = False) -> yaml.Node | None:
    """Parse one YAML document into checked nodes (keeping line numbers); raise BadInput.

    ``any_tag=True`` lets tags through (for a loader that knows its own, such as JJB's) and checks
    the rest: duplicate keys, nesting, aliases, complex keys, huge numbers.
    """
    try:
        loader = (_AnyTagLoader if any_tag else _Loader)(text)  # the reader refuses control characters here
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise BadInput(problem(e, where, quote=quote)) from None


def load(text: str, *, where: str, quote: bool = True) -> Any:
    """Parse one YAML document into plain data (dicts, lists, strings, numbers); raise BadInput.

    ``quote=False`` keeps the parser's words about the text out of the message, for files that
    hold credentials.
    """
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            return None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise BadInput(problem(e, where, quote=quote)) from None


def plain(node: yaml.Node) -> Any:
    """Turn a node that compose() checked into plain data."""
    return _Loader("").construct_document(node)


def problem(e: yaml.YAMLError, where: str, *, quote: bool = True) -> str:
    """Say where a YAML error is and, when quoting is safe, what it is."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    place = f"{where}:{mark.line + 1}" if mark is not None else where
    if isinstance(e, _Refused):
        return f"{place}: {e.problem}"
    if not quote:
        column = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{place}: not valid YAML{column}"
    return f"{place}: not valid YAML: {_short(str(getattr(e, 'problem', None) or e))}"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
