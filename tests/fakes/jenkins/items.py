"""The items the double holds: jobs, folders (items holding items) and views."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET

JOB_CLASSES = {
    "project": "hudson.model.FreeStyleProject",
    "flow-definition": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
    "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject":
        "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
    "com.cloudbees.hudson.plugins.folder.Folder": "com.cloudbees.hudson.plugins.folder.Folder",
}
BUILDABLE = ("project", "flow-definition")
FOLDER = "com.cloudbees.hudson.plugins.folder.Folder"
VIEW_CLASSES = ("hudson.model.ListView", "hudson.model.MyView", "hudson.model.AllView")
UNSAFE_NAME = re.compile(r"[/\\?*%!@#$^&|<>\[\]:;]")
MANAGED_VIEW = "<!-- Managed by Jenkins Job Builder -->"


@dataclasses.dataclass
class Build:
    number: int
    parameters: dict[str, str]
    cause: str
    result: str = "SUCCESS"


@dataclasses.dataclass
class Job:
    """An item: a job, or a folder holding items of its own (``children``)."""

    config: str
    builds: list[Build] = dataclasses.field(default_factory=list)
    children: dict[str, "Job"] = dataclasses.field(default_factory=dict)

    @property
    def root(self) -> str:
        return parse(self.config).tag

    @property
    def is_folder(self) -> bool:
        return self.root == FOLDER

    def parameters(self) -> dict[str, str] | None:
        """Return the parameter defaults, or None when the job takes no parameters."""
        definitions = parse(self.config).find(
            "properties/hudson.model.ParametersDefinitionProperty/parameterDefinitions")
        if definitions is None:
            return None
        return {(d.findtext("name") or ""): (d.findtext("defaultValue") or "") for d in definitions}


@dataclasses.dataclass
class View:
    config: str

    @property
    def root(self) -> str:
        return parse(self.config).tag

    def job_names(self, all_names: list[str]) -> list[str]:
        """Return the jobs the view lists: all of them for an AllView, the named or matching ones else."""
        root = parse(self.config)
        if root.tag == "hudson.model.AllView":
            return all_names
        named = {e.text for e in root.findall("jobNames/string")}
        pattern = root.findtext("includeRegex")
        return [n for n in all_names if n in named or (pattern and re.fullmatch(pattern, n))]


# What a new item of each type (createItem?mode=TYPE) holds before it is first configured.
NEW_ITEMS = {
    "hudson.model.FreeStyleProject":
        "<project><actions/><description></description><keepDependencies>false</keepDependencies><properties/>"
        "<scm class=\"hudson.scm.NullSCM\"/><canRoam>true</canRoam><disabled>false</disabled>"
        "<blockBuildWhenDownstreamBuilding>false</blockBuildWhenDownstreamBuilding>"
        "<blockBuildWhenUpstreamBuilding>false</blockBuildWhenUpstreamBuilding><triggers/>"
        "<concurrentBuild>false</concurrentBuild><builders/><publishers/><buildWrappers/></project>",
    "org.jenkinsci.plugins.workflow.job.WorkflowJob":
        "<flow-definition><actions/><description></description><keepDependencies>false</keepDependencies>"
        "<properties/><triggers/><disabled>false</disabled></flow-definition>",
    FOLDER:
        f"<{FOLDER}><actions/><description></description><properties/>"
        "<folderViews class=\"com.cloudbees.hudson.plugins.folder.views.DefaultFolderViewHolder\">"
        "<views><hudson.model.AllView><owner class=\"com.cloudbees.hudson.plugins.folder.Folder\" "
        "reference=\"../../../..\"/><name>All</name><filterExecutors>false</filterExecutors>"
        "<filterQueue>false</filterQueue><properties class=\"hudson.model.View$PropertyList\"/>"
        "</hudson.model.AllView></views><tabBar class=\"hudson.views.DefaultViewsTabBar\"/></folderViews>"
        "<healthMetrics/><icon class=\"com.cloudbees.hudson.plugins.folder.icons.StockFolderIcon\"/>"
        f"</{FOLDER}>",
}
ALL_VIEW = ("<?xml version='1.1' encoding='UTF-8'?>\n<hudson.model.AllView>\n  <name>all</name>\n  <filterExecutors>false</filterExecutors>\n"
            "  <filterQueue>false</filterQueue>\n  <properties class=\"hudson.model.View$PropertyList\"/>\n"
            "</hudson.model.AllView>")


def parse(xml: str | bytes) -> ET.Element:
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    return ET.fromstring(xml)


def bad_name(name: str) -> str:
    """Return Jenkins' complaint about an item or view name, or ""."""
    if not name:
        return "Query parameter 'name' is required"
    unsafe = UNSAFE_NAME.search(name)
    if unsafe:
        return f"‘{unsafe.group(0)}’ is an unsafe character"
    if name in (".", ".."):
        return f"“{name}” is not an allowed name"
    return ""


def bad_config(body: bytes, classes) -> str:
    """Return why Jenkins would fail to load this config.xml, or ""."""
    try:
        root = parse(body)
    except (ET.ParseError, UnicodeDecodeError) as e:
        return str(e)
    if root.tag not in classes:
        return f"unknown item type <{root.tag}>"
    return ""


def walk(root: dict[str, Job], segments: list[str]) -> tuple[list[str], Job | None, list[str]]:
    """Follow ``job/NAME`` pairs from the top: (full name parts, the item or None, the rest of the path).

    A ``job/NAME`` that names nothing, or goes inside an item that is not a folder, ends the walk
    with no item.
    """
    names: list[str] = []
    item: Job | None = None
    items = root
    index = 0
    while index + 1 < len(segments) and segments[index] == "job":
        if item is not None and not item.is_folder and not item.children:
            return names, None, segments[index:]
        found = items.get(segments[index + 1])
        if found is None:
            return names + [segments[index + 1]], None, segments[index + 2:]
        names.append(segments[index + 1])
        item, items = found, found.children
        index += 2
    return names, item, segments[index:]


def all_jobs(items: dict[str, Job], prefix: str = "") -> list[tuple[str, Job]]:
    """Return every item below, with its full name, folders before their contents."""
    found = []
    for name, job in sorted(items.items()):
        found.append((prefix + name, job))
        found += all_jobs(job.children, f"{prefix}{name}/")
    return found
