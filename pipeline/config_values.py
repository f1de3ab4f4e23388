"""The values a setting may take: coercion from YAML and from text, choices, forms and ranges.

``config.load`` gives every raw value to ``coerce``; a ``ValueError`` from it becomes one problem
naming where the value came from. Messages quote a value cut short (``short``): a bad one may be
megabytes long.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

TARGETS = ("docker", "kubernetes")
TAG_KINDS = ("commit", "short-commit", "branch")
NETWORK_ADDONS = ("flannel",)
AUDIT_FAIL_ON = ("critical", "high", "moderate", "off")  # the lowest severity that fails the build
AUDIT_UNREACHABLE = ("warn", "fail")

MAX_INT = 10 ** 9
PORT = (1, 65535)
INT_RANGES = {"image.port": PORT, "deploy.host_port": PORT, "preview.local_port": PORT}
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
BOX_VERSION = re.compile(r"[0-9]+(\.[0-9]+){0,3}")


def coerce(key: str, kind: type, raw: Any, from_text: bool) -> Any:
    """Turn a raw value (from YAML, or text from the environment or a flag) into the setting's type."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if from_text and str(raw).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return str(raw).lower() in ("1", "true", "yes", "on")
        raise ValueError(f"expected true or false, got {short(repr(raw))}")
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise ValueError(f"expected a whole number, got {short(repr(raw))}")
        # ASCII digits only: str.isdigit() and int() also take '١٢' and '²'
        if isinstance(raw, str) and not (from_text and re.fullmatch(r"\s*-?[0-9]{1,18}\s*", raw)):
            raise ValueError(f"expected a whole number, got {short(raw)!r}")
        value = int(raw)
        low, high = INT_RANGES.get(key, (1, MAX_INT))
        if value < low and key not in INT_RANGES:
            raise ValueError(f"expected a number above 0, got {value}")
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}, got {value}")
        return value
    if typing.get_origin(kind) is tuple:
        items = [s.strip() for s in raw.split(",") if s.strip()] if from_text and isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"expected a list of strings, got {short(repr(raw))}")
        check_choice(key, items)
        return tuple(items)
    if kind is str:
        if raw is None:
            return ""
        if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
            raise ValueError(f"expected a string, got {short(repr(raw))}")
        check_choice(key, [str(raw)])
        return str(raw)
    raise TypeError(f"no coercion for {kind!r}")  # a bug in config's dataclasses


def check_choice(key: str, items: list[str]) -> None:
    """Refuse a value outside the setting's choices or form (raise ValueError saying what is expected)."""
    allowed = {"deploy.target": TARGETS, "image.tags": TAG_KINDS, "cluster.network_addon": NETWORK_ADDONS,
               "audit.fail_on": AUDIT_FAIL_ON, "audit.unreachable": AUDIT_UNREACHABLE}.get(key)
    for item in items:
        if allowed is not None and item not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {item!r}")
    if key == "image.health_path" and items and not items[0].startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {items[0]!r}")
    if key == "preview.url" and items and not _url_template_ok(items[0]):
        raise ValueError(f"expected an http(s) URL naming {{name}} (and optionally {{namespace}}),"
                         f" got {short(items[0])!r}")
    if key in ("app", "preview.namespace") and items and not DNS_LABEL.fullmatch(items[0]):
        raise ValueError(f"expected a DNS-1123 label (1-63 of a-z, 0-9 and '-', starting and ending"
                         f" with a letter or digit), got {short(items[0])!r}")
    if key == "cluster.box_version" and items and not BOX_VERSION.fullmatch(items[0]):
        raise ValueError(f"expected a version such as 1.31.4 (digits and dots), got {short(items[0])!r}")
    if key == "registry.url" and items and "@" in items[0]:
        # an image reference has no place for a login; masked anyway, should it reach a message
        raise ValueError(f"a registry login does not belong in the URL, got '…@{short(items[0].rsplit('@', 1)[1])}'"
                         " (set registry.user and PINOTAGE_REGISTRY_PASSWORD)")


def _url_template_ok(template: str) -> bool:
    import string

    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:
        return False
    return bool(re.match(r"https?://", template)) and "name" in fields and fields <= {"name", "namespace"}


def short(text: str, limit: int = 60) -> str:
    """Cut a value for a message: a bad value may be megabytes long."""
    return text if len(text) <= limit else text[:limit] + "…"


def did_you_mean(key: str, candidates: list[str]) -> str:
    """Suggest the closest known name, as " (did you mean 'x'?)", or ""."""
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close:
        by_leaf = {c.rsplit(".", 1)[-1]: c for c in candidates}
        leaf = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(by_leaf), n=1, cutoff=0.75)
        close = [by_leaf[leaf[0]]] if leaf else []
    return f" (did you mean {close[0]!r}?)" if close else ""
