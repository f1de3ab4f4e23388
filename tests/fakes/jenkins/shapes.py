"""The JSON Jenkins answers about items, builds, views and the queue, and its ``tree=`` filter."""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import quote

from tests.fakes.jenkins.items import BUILDABLE, JOB_CLASSES, Build, Job, View, parse


def item_url(base: str, full_name: str) -> str:
    return base + "/" + "".join(f"job/{quote(part)}/" for part in full_name.split("/"))


def color(job: Job, root=None) -> str | None:
    if job.root not in BUILDABLE:
        return None
    if (parse(job.config) if root is None else root).findtext("disabled") == "true":
        return "disabled"
    return "blue" if job.builds else "notbuilt"


def item_summary(base: str, full_name: str, job: Job, visible: Callable[[str], bool]) -> dict[str, Any]:
    """Return an item as it appears in a ``jobs`` list (with ``jobs`` of its own for a folder).

    ``description`` is there for a ``tree=jobs[description]``; ``shallow`` drops it, as Jenkins lists
    only ``name``, ``url`` and ``color`` without a tree.
    """
    root = parse(job.config)
    summary: dict[str, Any] = {"_class": JOB_CLASSES[job.root], "name": full_name.rsplit("/", 1)[-1],
                               "url": item_url(base, full_name), "description": root.findtext("description") or ""}
    if job.root in BUILDABLE:
        summary["color"] = color(job, root)
    if job.root not in BUILDABLE:
        summary["jobs"] = children(base, full_name, job, visible)
    return summary


def children(base: str, full_name: str, job: Job, visible: Callable[[str], bool]) -> list[dict[str, Any]]:
    prefix = f"{full_name}/" if full_name else ""
    return [item_summary(base, prefix + name, child, visible)
            for name, child in sorted(job.children.items()) if visible(prefix + name)]


def view_summary(base: str, name: str, view: View, prefix: str = "", primary: bool = False) -> dict[str, Any]:
    url = base + "/" + prefix + ("" if primary else f"view/{quote(name)}/")
    return {"_class": view.root, "name": name, "url": url}


def root_info(fake, visible: Callable[[str], bool]) -> dict[str, Any]:
    top = Job("<com.cloudbees.hudson.plugins.folder.Folder/>", children=fake.jobs)
    views = [view_summary(fake.url, name, view, primary=name == fake.primary_view)
             for name, view in sorted(fake.views.items())]
    built_in = fake.nodes[0]
    return {"_class": "hudson.model.Hudson", "mode": "NORMAL", "nodeDescription": "the Jenkins controller's built-in node",
            "nodeName": "", "numExecutors": built_in.executors, "useCrumbs": fake.crumbs,
            "useSecurity": bool(fake.users), "url": f"{fake.url}/", "quietingDown": False,
            "jobs": children(fake.url, "", top, visible),
            "primaryView": next(v for v in views if v["name"] == fake.primary_view), "views": views}


def job_info(base: str, full_name: str, job: Job, visible: Callable[[str], bool]) -> dict[str, Any]:
    name = full_name.rsplit("/", 1)[-1]
    root = parse(job.config)
    info: dict[str, Any] = {
        "_class": JOB_CLASSES[job.root], "name": name, "fullName": full_name,
        "displayName": root.findtext("displayName") or name, "fullDisplayName": full_name.replace("/", " » "),
        "url": item_url(base, full_name), "description": root.findtext("description") or ""}
    if job.root not in BUILDABLE:
        info["jobs"] = children(base, full_name, job, visible)
        info["views"] = [{"_class": "hudson.model.AllView", "name": "All", "url": info["url"]}]
        return info
    builds = [{"_class": "hudson.model.FreeStyleBuild", "number": b.number,
               "url": f"{info['url']}{b.number}/"} for b in reversed(job.builds)]
    info.update({"buildable": root.findtext("disabled") != "true", "disabled": root.findtext("disabled") == "true",
                 "color": color(job), "builds": builds, "firstBuild": builds[-1] if builds else None,
                 "lastBuild": builds[0] if builds else None, "nextBuildNumber": len(job.builds) + 1,
                 "inQueue": False, "queueItem": None, "concurrentBuild": root.findtext("concurrentBuild") == "true",
                 "property": []})
    return info


def build_info(base: str, full_name: str, build: Build) -> dict[str, Any]:
    actions = [{"_class": "hudson.model.CauseAction",
                "causes": [{"_class": "hudson.model.Cause$UserIdCause", "shortDescription": build.cause}]}]
    if build.parameters:
        actions.append({"_class": "hudson.model.ParametersAction", "parameters": [
            {"_class": "hudson.model.StringParameterValue", "name": k, "value": v}
            for k, v in build.parameters.items()]})
    return {"_class": "hudson.model.FreeStyleBuild", "number": build.number, "id": str(build.number),
            "result": build.result, "building": False, "duration": 0, "actions": actions,
            "fullDisplayName": f"{full_name.replace('/', ' » ')} #{build.number}",
            "url": f"{item_url(base, full_name)}{build.number}/"}


def view_info(base: str, name: str, view: View, jobs: list[tuple[str, Job]], primary: bool) -> dict[str, Any]:
    listed = view.job_names([n for n, _ in jobs])
    by_name = dict(jobs)
    root = parse(view.config)
    return {**view_summary(base, name, view, primary=primary), "description": root.findtext("description"),
            "jobs": [{"_class": JOB_CLASSES[by_name[n].root], "name": n, "url": item_url(base, n),
                      **({"color": color(by_name[n])} if by_name[n].root in BUILDABLE else {})} for n in listed],
            "property": []}


def queue_item(base: str, queue_id: int, full_name: str, number: int) -> dict[str, Any]:
    return {"_class": "hudson.model.Queue$LeftItem", "id": queue_id, "blocked": False,
            "buildable": False, "cancelled": False, "why": None,
            "task": {"_class": "hudson.model.FreeStyleProject", "name": full_name.rsplit("/", 1)[-1],
                     "url": item_url(base, full_name)},
            "executable": {"_class": "hudson.model.FreeStyleBuild", "number": number,
                           "url": f"{item_url(base, full_name)}{number}/"}}


def parse_tree(tree: str) -> dict[str, Any]:
    """Parse a ``tree=`` query into {field: sub-tree or None}."""
    fields: dict[str, Any] = {}
    depth, start, name = 0, 0, ""
    for index, char in enumerate(tree + ","):
        if char == "[":
            if depth == 0:
                name, start = tree[start:index].strip(), index + 1
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                fields[name] = parse_tree(tree[start:index])
                name, start = "", index + 1
        elif char == "," and depth == 0:
            key = tree[start:index].strip().split("{", 1)[0]
            if key:
                fields[key] = None
            start = index + 1
    return fields


def filtered(data: Any, tree: dict[str, Any] | None) -> Any:
    """Keep only the fields a tree asks for (and ``_class``), at every level, as Jenkins does."""
    if isinstance(data, list):
        return [filtered(item, tree) for item in data]
    if not isinstance(data, dict):
        return data
    if tree is None:
        return {"_class": data["_class"]} if "_class" in data else {}
    return {k: (filtered(v, tree[k]) if isinstance(v, (dict, list)) else v)
            for k, v in data.items() if k in tree or k == "_class"}


def shallow(data: dict[str, Any]) -> dict[str, Any]:
    """Cut nested ``jobs`` lists to their depth-0 form, as Jenkins answers without ``tree`` or ``depth``."""
    cut = dict(data)
    if isinstance(cut.get("jobs"), list):
        cut["jobs"] = [{k: v for k, v in job.items() if k not in ("jobs", "description")} for job in cut["jobs"]]
    return cut
