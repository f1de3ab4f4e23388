"""Write a posted config.xml back the way Jenkins' XStream writes an item it saves.

Jenkins keeps an item as Java objects and writes them with XStream's pretty printer:
``<?xml version='1.1' encoding='UTF-8'?>``, two-space indentation, ``<tag/>`` for an empty
object or list but ``<tag></tag>`` for an empty string, ``&quot;`` and ``&apos;`` in text,
no comments (they never reach the objects), the fields of a class in its declared order,
and ``plugin="name@version"`` on each object whose class belongs to a plugin other than
the enclosing object's. Nothing here knows Pinotage; docs/test-doubles.md says what is
and is not modelled.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Mapping

DECLARATION = "<?xml version='1.1' encoding='UTF-8'?>"

# The Java class behind a root tag XStream writes as an alias.
ROOT_CLASSES = {
    "project": "hudson.model.FreeStyleProject",
    "flow-definition": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
}
# Class name prefix -> the plugin that owns it (longest prefix wins); core classes have none.
OWNERS = {
    "org.jenkinsci.plugins.workflow.job.": "workflow-job",
    "org.jenkinsci.plugins.workflow.cps.": "workflow-cps",
    "org.jenkinsci.plugins.workflow.multibranch.": "workflow-multibranch",
    "org.jenkinsci.plugins.workflow.libs.": "pipeline-groovy-lib",
    "org.jenkinsci.plugins.pipeline.modeldefinition.": "pipeline-model-definition",
    "jenkins.branch.": "branch-api",
    "jenkins.scm.impl.trait.": "scm-api",
    "jenkins.plugins.git.": "git",
    "hudson.plugins.git.": "git",
    "org.jenkinsci.plugins.github_branch_source.": "github-branch-source",
    "com.cloudbees.hudson.plugins.folder.": "cloudbees-folder",
    "com.cloudbees.plugins.credentials.": "credentials",
    "org.jenkinsci.plugins.credentialsbinding.": "credentials-binding",
    "hudson.plugins.timestamper.": "timestamper",
    "org.jenkinsci.plugins.workflow.job.properties.": "workflow-job",
}
# Class name prefixes of Jenkins core: XStream writes no plugin attribute on these.
CORE = ("hudson.model.", "hudson.tasks.", "hudson.scm.", "hudson.triggers.", "hudson.views.", "hudson.util.",
        "hudson.slaves.", "jenkins.model.", "jenkins.triggers.")
# Field order of the classes whose fields the double knows (superclass fields first, as XStream writes).
FIELDS = {
    "hudson.model.FreeStyleProject": (
        "actions", "description", "displayName", "logRotator", "keepDependencies", "properties", "scm",
        "quietPeriod", "scmCheckoutRetryCount", "assignedNode", "canRoam", "disabled",
        "blockBuildWhenDownstreamBuilding", "blockBuildWhenUpstreamBuilding", "jdk", "authToken", "triggers",
        "concurrentBuild", "customWorkspace", "builders", "publishers", "buildWrappers"),
    "org.jenkinsci.plugins.workflow.job.WorkflowJob": (
        "actions", "description", "displayName", "logRotator", "keepDependencies", "properties", "definition",
        "triggers", "quietPeriod", "authToken", "disabled"),
}
# The Java primitive fields of those classes: one missing from a posted config.xml loads as its
# default, and XStream writes every primitive, so it appears on save.
PRIMITIVES = {
    "hudson.model.FreeStyleProject": ("keepDependencies", "canRoam", "disabled", "blockBuildWhenDownstreamBuilding",
                                      "blockBuildWhenUpstreamBuilding", "concurrentBuild"),
    "org.jenkinsci.plugins.workflow.job.WorkflowJob": ("keepDependencies", "disabled"),
}
# Elements holding a Java String: empty, XStream writes them open and closed.
STRING_FIELDS = {"description", "displayName", "command", "script", "scriptPath", "name", "defaultValue",
                 "credentialsId", "remote", "url", "repoOwner", "repository", "id", "assignedNode",
                 "authToken", "customWorkspace", "value", "refspec", "includes", "excludes"}
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "\r": "&#xd;"}


def saved_form(xml: bytes | str, plugins: Mapping[str, str]) -> str:
    """Return the config.xml Jenkins writes after loading ``xml``; ``plugins`` maps short name to version."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    root = ET.fromstring(xml)  # comments are dropped, as XStream never sees them
    lines = [DECLARATION]
    _write(root, 0, None, plugins, lines)
    return "\n".join(lines)


def class_of(element: ET.Element, *, root: bool = False) -> str:
    """Return the Java class an element stands for, or "" when the tag names a field."""
    if "class" in element.attrib:
        return element.attrib["class"]
    if root and element.tag in ROOT_CLASSES:
        return ROOT_CLASSES[element.tag]
    # an element name escapes a class name's "_" as "__" and "$" as "_-"
    return element.tag.replace("_-", "$").replace("__", "_") if "." in element.tag else ""


def owner_of(java_class: str) -> str | None:
    """Return the plugin owning a class: "" for core, None for a class the double cannot place."""
    matches = [prefix for prefix in OWNERS if java_class.startswith(prefix)]
    if matches:
        return OWNERS[max(matches, key=len)]
    return "" if java_class.startswith(CORE) or java_class in ROOT_CLASSES.values() else None


def _write(element: ET.Element, depth: int, enclosing: str | None, plugins: Mapping[str, str],
           lines: list[str]) -> None:
    java_class = class_of(element, root=depth == 0)
    owner = owner_of(java_class) if java_class else ""
    attributes = _attributes(element, owner, enclosing, plugins)
    inner_owner = (owner or "") if java_class else enclosing
    indent = "  " * depth
    # a reference to an object written before carries no fields of its own
    children = _ordered(list(element), java_class) if "reference" not in element.attrib else list(element)
    text = element.text or ""
    if not children:
        if text:
            lines.append(f"{indent}<{element.tag}{attributes}>{_escape(text)}</{element.tag}>")
        elif element.tag in STRING_FIELDS and not java_class:
            lines.append(f"{indent}<{element.tag}{attributes}></{element.tag}>")
        else:
            lines.append(f"{indent}<{element.tag}{attributes}/>")
        return
    lines.append(f"{indent}<{element.tag}{attributes}>")
    for child in children:
        _write(child, depth + 1, inner_owner, plugins, lines)
    lines.append(f"{indent}</{element.tag}>")


def _attributes(element: ET.Element, owner: str | None, enclosing: str | None, plugins: Mapping[str, str]) -> str:
    attributes = dict(element.attrib)
    posted_plugin = attributes.pop("plugin", None)
    ordered = {}
    if "class" in attributes:
        ordered["class"] = attributes.pop("class")
    ordered.update(attributes)
    if "reference" in attributes:
        pass  # a reference to an object written before: XStream runs no converter, so no plugin attribute
    elif owner and owner != enclosing and owner in plugins:
        ordered["plugin"] = f"{owner}@{plugins[owner]}"
    elif owner is None and posted_plugin:
        # a class the double cannot place: keep what the client said about it
        name = posted_plugin.split("@", 1)[0]
        ordered["plugin"] = f"{name}@{plugins[name]}" if name in plugins else posted_plugin
    return "".join(f' {key}="{_escape(value)}"' for key, value in ordered.items())


def _ordered(children: list[ET.Element], java_class: str) -> list[ET.Element]:
    """Put a known class's fields in its declared order; unknown fields keep theirs, after them."""
    order = FIELDS.get(java_class)
    if not order:
        return children
    present = {c.tag for c in children}
    children = children + [_false(tag) for tag in PRIMITIVES.get(java_class, ()) if tag not in present]
    known = sorted((c for c in children if c.tag in order), key=lambda c: order.index(c.tag))
    return known + [c for c in children if c.tag not in order]


def _false(tag: str) -> ET.Element:
    element = ET.Element(tag)
    element.text = "false"
    return element


def _escape(text: str) -> str:
    text = re.sub(r"[&<>\"'\r]", lambda m: _ESCAPES[m.group(0)], text)
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", lambda m: f"&#x{ord(m.group(0)):x};", text)
