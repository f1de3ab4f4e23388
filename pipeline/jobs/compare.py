"""Compare rendered jobs with the live ones, and decide the writes that bring Jenkins to jobs/.

Pure: the live side comes in as plain strings, fetched by ``pipeline.jenkins``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import xml.etree.ElementTree as ET
from typing import AbstractSet, Iterable, Mapping

from pipeline.jobs import verdicts
from pipeline.jobs.render import MANAGED_MARK, RenderedJob


# What Jenkins writes for a field it filled in on load: a Java primitive's or an empty list's default.
FILLED_DEFAULTS = ("", "false", "0")
DECLARATION = re.compile(rb"^\s*<\?xml[^>]*\?>")


@dataclasses.dataclass(frozen=True)
class Drift:
    """How one live job differs from jobs/: missing, changed (with a unified diff) or the same."""

    name: str
    state: str  # "missing" | "changed" | "same"
    diff: str = ""


@dataclasses.dataclass(frozen=True)
class UpdatePlan:
    """The writes that bring Jenkins to jobs/, and nothing else."""

    create: tuple[RenderedJob, ...] = ()
    reconfigure: tuple[RenderedJob, ...] = ()
    delete: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    same_pairs: frozenset[bytes] = frozenset()  # the verdicts.key of each unchanged job and its live config


def normalise(xml: str | bytes, *, ours: bytes | None = None) -> list[str]:
    """Return a job config as canonical lines: no layout, no plugin attributes, fields in a stable order.

    Jenkins stores what it was sent but rewrites it whenever it saves the job
    (XStream): its own XML declaration, indentation and escapes, no comments,
    ``plugin="name@version"`` on the objects a plugin owns, and each object's
    fields in its class's order. None of that is a change to the job. The
    order of a list (builders, publishers, string entries) is kept: it is one.
    Given ``ours`` (the job as rendered), a field Jenkins filled in with a
    default value because ours lacks it is left out too.
    """
    root = _parse(xml)
    if ours is not None:
        _drop_filled_defaults(root, _parse(ours))
    lines: list[str] = []
    _canonical_lines(root, 0, lines)
    return lines


def compare(job: RenderedJob, live_xml: str | None) -> Drift:
    """Compare one rendered job with the live config (None: Jenkins has no such job)."""
    if live_xml is None:
        return Drift(job.name, "missing")
    ours, live = _parse(job.xml), _parse(live_xml)
    _drop_filled_defaults(live, ours)
    if _same(ours, live):  # the usual answer, reached without writing either job out as lines
        return Drift(job.name, "same")
    want, have = _lines(ours), _lines(live)
    if want == have:
        return Drift(job.name, "same")
    text = "\n".join(difflib.unified_diff(have, want, f"jenkins/{job.name}", f"jobs/{job.name}",
                                          lineterm="", n=2))
    return Drift(job.name, "changed", text)


def compare_all(jobs: Iterable[RenderedJob], live: Mapping[str, str | None],
                same_before: AbstractSet[bytes] = frozenset()) -> tuple[list[Drift], frozenset[bytes]]:
    """Compare each job with its live config; return the drifts and the verdicts.key of the same pairs.

    A pair in ``same_before`` (found the same by an earlier update, byte for byte) is not compared again.
    """
    drifts, same = [], set()
    for job in jobs:
        xml = live.get(job.name)
        pair = verdicts.key(job.xml, xml) if xml is not None else b""
        drift = Drift(job.name, "same") if pair in same_before else compare(job, xml)
        if drift.state == "same":
            same.add(pair)
        drifts.append(drift)
    return drifts, frozenset(same)


def plan_update(jobs: Iterable[RenderedJob], live: Mapping[str, str | None],
                others: Mapping[str, str] = {}, *, delete_old: bool = False,
                same_before: AbstractSet[bytes] = frozenset()) -> UpdatePlan:
    """Decide the writes: create the missing, reconfigure the changed, delete own leftovers.

    ``live`` maps each rendered job's name to its live config (None when absent);
    ``others`` maps the live jobs not in jobs/ to their configs; ``same_before`` as in ``compare_all``.
    """
    jobs = list(jobs)
    drifts, same = compare_all(jobs, live, same_before)
    create = tuple(job for job, drift in zip(jobs, drifts) if drift.state == "missing")
    reconfigure = tuple(job for job, drift in zip(jobs, drifts) if drift.state == "changed")
    unchanged = tuple(drift.name for drift in drifts if drift.state == "same")
    delete = sorted(name for name, xml in others.items() if is_managed(xml)) if delete_old else []
    return UpdatePlan(create, reconfigure, tuple(delete), unchanged, same)


def is_managed(xml: str | bytes) -> bool:
    """Tell whether a live job was made by Pinotage (its description carries the mark)."""
    try:
        description = _parse(xml).find("description")
    except ET.ParseError:
        return False
    return description is not None and MANAGED_MARK in (description.text or "")


def _parse(xml: str | bytes) -> ET.Element:
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    # The declaration says nothing about the job (Jenkins writes version 1.1, which expat refuses; JJB 1.0).
    return ET.fromstring(DECLARATION.sub(b"", xml, count=1))


def _lines(root: ET.Element) -> list[str]:
    lines: list[str] = []
    _canonical_lines(root, 0, lines)
    return lines


def _same(ours: ET.Element, live: ET.Element) -> bool:
    """Tell whether two elements write out as the same canonical lines, stopping at the first difference."""
    if ours.tag != live.tag or _attributes(ours) != _attributes(live):
        return False
    children, counterparts = list(ours), list(live)
    if len(children) != len(counterparts):
        return False
    if not children:
        return _text(ours) == _text(live)
    return all(_same(a, b) for a, b in zip(_fields_sorted(children), _fields_sorted(counterparts)))


def _attributes(element: ET.Element) -> dict[str, str]:
    # plugin= only names the plugin that owns the element's class, and Jenkins adds it on save
    attributes = element.attrib
    return {key: value for key, value in attributes.items() if key != "plugin"} if "plugin" in attributes \
        else attributes


def _text(element: ET.Element) -> str:
    text = (element.text or "").strip()
    if "\n" not in text and "\r" not in text:
        return text
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n"))


def _canonical_lines(element: ET.Element, depth: int, lines: list[str]) -> None:
    attributes = "".join(f' {key}="{value}"' for key, value in sorted(_attributes(element).items()))
    text = _text(element)
    indent = "  " * depth
    children = list(element)
    if not children:
        lines.append(f"{indent}<{element.tag}{attributes}>{_escape(text)}</{element.tag}>" if text
                     else f"{indent}<{element.tag}{attributes}/>")
        return
    lines.append(f"{indent}<{element.tag}{attributes}>")
    for child in _fields_sorted(children):
        _canonical_lines(child, depth + 1, lines)
    lines.append(f"{indent}</{element.tag}>")


def _is_object(children: list[ET.Element]) -> bool:
    """Tell an object's fields from a list's items.

    XStream writes an object's fields under their Java names (no dot, each once)
    and a list's items under their class names (dotted) or repeated tags.
    """
    tags = [child.tag for child in children]
    return len(set(tags)) == len(tags) and not any("." in tag for tag in tags)


def _fields_sorted(children: list[ET.Element]) -> list[ET.Element]:
    """Sort an object's fields by name; keep a list's items in their order."""
    return sorted(children, key=lambda child: child.tag) if _is_object(children) else children


def _drop_filled_defaults(live: ET.Element, ours: ET.Element) -> None:
    """Remove from live the fields Jenkins filled in on load because ours has none.

    Jenkins gives a missing field its Java default (false, 0, an empty list) and
    writes it on save; sending ours again would do the same, so it is no change.
    A field holding anything else (``<disabled>true</disabled>``) is one.
    """
    children = list(live)
    if _is_object(children):
        fields: dict[str, ET.Element] = {}
        for field in ours:
            fields.setdefault(field.tag, field)  # the first of a tag, as find() answers
        for child in children:
            counterpart = fields.get(child.tag)
            if counterpart is not None:
                _drop_filled_defaults(child, counterpart)
            elif not len(child) and not child.attrib and (child.text or "").strip() in FILLED_DEFAULTS:
                live.remove(child)
        return
    for child, counterpart in zip(children, list(ours)):
        if child.tag == counterpart.tag:
            _drop_filled_defaults(child, counterpart)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
