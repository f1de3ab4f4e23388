"""Items and views: read, create (at the top or in a folder), configure, delete, build.

A config.xml is stored as Jenkins' XStream writes it on save (see xstream), so what a client
reads back is Jenkins-shaped rather than an echo of what it sent.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.jenkins import routes, shapes
from tests.fakes.jenkins.items import (BUILDABLE, JOB_CLASSES, NEW_ITEMS, VIEW_CLASSES, Build, Job, View, all_jobs,
                                       bad_config, bad_name, parse, walk)
from tests.fakes.jenkins.xstream import saved_form


def route(h, s: list[str], query: dict[str, list[str]], tree: dict[str, Any] | None) -> None:
    fake = h.fake
    if s[:1] == ["view"] or s == ["createView"]:
        return view(h, s, query, tree)
    if s == ["createItem"]:
        return create(h, fake.jobs, "", query)
    names, job, rest = walk(fake.jobs, s)
    full_name = "/".join(names)
    if job is None:
        return h.error(404, "Not Found")
    if not h.user.may("Job/Read"):
        if h.user.may("Job/Discover"):
            return h.error(403, f"{h.user.name} is missing the Job/Read permission")
        return h.error(404, "Not Found")
    if rest[:2] == ["credentials", "store"] and len(rest) > 2 and rest[2] == "folder" and job.is_folder:
        return routes.credentials(h, full_name, rest[3:], tree)
    if rest == ["config.xml"]:
        return config(h, full_name, job)
    if h.command == "POST":
        return post(h, full_name, job, rest, query)
    if rest == ["api", "json"]:
        info = shapes.job_info(fake.url, full_name, job, lambda _: True)
        return h.json(shapes.filtered(info, tree) if tree is not None else shapes.shallow(info))
    if not rest or rest == ["configure"]:
        if rest and h.refuse("Job/Configure"):
            return
        return h.send(200, f"<html><head><title>{full_name} [Jenkins]</title></head></html>")
    if len(rest) >= 2 and rest[0].isdigit():
        build = job.builds[int(rest[0]) - 1] if 0 < int(rest[0]) <= len(job.builds) else None
        if build is not None and rest[1:] == ["api", "json"]:
            return h.json(shapes.build_info(fake.url, full_name, build))
        if build is not None and rest[1:] == ["consoleText"]:
            lines = [build.cause] + [f"{k}={v}" for k, v in build.parameters.items()]
            return h.send(200, "\n".join(lines + [f"Finished: {build.result}", ""]), "text/plain;charset=utf-8")
    h.error(404, "Not Found")


def config(h, full_name: str, job: Job) -> None:
    """Read or replace a job's config.xml: both need Job/Configure (Job/ExtendedRead is off)."""
    if h.refuse("Job/Configure"):
        return
    if h.command != "POST":
        return h.send(200, job.config, "application/xml")
    problem = bad_config(h.body, JOB_CLASSES)
    if not problem and parse(h.body).tag != job.root:
        problem = (f"Expecting class {JOB_CLASSES[job.root]} but got class"
                   f" {JOB_CLASSES[parse(h.body).tag]} instead")
    if problem:
        return h.error(500, f"Failed to parse the configuration of {full_name}: {problem}")
    job.config = saved_form(h.body, h.fake.plugin_versions())
    h.send(200)


def post(h, full_name: str, job: Job, rest: list[str], query: dict[str, list[str]]) -> None:
    if rest == ["createItem"] and job.is_folder:
        return create(h, job.children, full_name + "/", query)
    if rest == ["doDelete"]:
        if h.refuse("Job/Delete"):
            return
        parent_name, _, name = full_name.rpartition("/")
        parent = h.fake.item(parent_name).children if parent_name else h.fake.jobs
        del parent[name]
        return h.send(302, headers={"Location": shapes.item_url(h.fake.url, parent_name) if parent_name
                                    else f"{h.fake.url}/"})
    if rest in (["build"], ["buildWithParameters"]):
        return build_now(h, full_name, job, rest[0], query)
    h.error(404, "Not Found")


def create(h, parent: dict[str, Job], prefix: str, query: dict[str, list[str]]) -> None:
    """Create an item from a config.xml, a copy or an item type (``mode``), at the top or in a folder."""
    if h.refuse("Job/Create"):
        return
    form = parse_qs(h.body.decode("utf-8", "replace")) if "form-urlencoded" in h.headers.get("Content-Type", "") else {}
    params = {k: v[0] for k, v in {**form, **query}.items()}  # a servlet reads the query first
    name, mode = params.get("name", ""), params.get("mode", "")
    by_xml = "xml" in h.headers.get("Content-Type", "")
    if refuse_new(h, name, name in parent, "job", needs_xml=False):
        return
    if by_xml:
        problem = bad_config(h.body, JOB_CLASSES)
        if problem:
            return h.error(500, f"Failed to parse the configuration of {prefix}{name}: {problem}")
        config = h.body
    elif mode == "copy":
        source = h.fake.item(prefix + params.get("from", "")) or h.fake.item(params.get("from", "").strip("/"))
        if source is None:
            return h.error(400, f"No such job: {params.get('from', '')}")
        config = source.config.encode("utf-8")
    elif mode in NEW_ITEMS:
        config = NEW_ITEMS[mode].encode("utf-8")
    else:
        return h.error(400, "No mode given" if not mode else f"No item type ‘{mode}’ is known")
    parent[name] = Job(saved_form(config, h.fake.plugin_versions()))
    if by_xml:
        return h.send(200)
    h.send(302, headers={"Location": shapes.item_url(h.fake.url, prefix + name) + "configure"})


def refuse_new(h, name: str, taken: bool, kind: str, *, needs_xml: bool = True) -> bool:
    """Answer 400 for a bad or taken name or a body that is not XML; return whether it did."""
    problem = bad_name(name)
    if not problem and taken:
        problem = f"A {kind} already exists with the name ‘{name}’"
    if not problem and needs_xml and "xml" not in h.headers.get("Content-Type", ""):
        problem = "No mode given"
    if problem:
        h.error(400, problem)
    return bool(problem)


def build_now(h, full_name: str, job: Job, action: str, query: dict[str, list[str]]) -> None:
    if job.root not in BUILDABLE:
        return h.error(405, "Method Not Allowed")
    if h.refuse("Job/Build"):
        return
    defaults = job.parameters()
    if action == "build" and defaults is not None:
        return h.error(400, "Nothing is submitted")
    if action == "buildWithParameters" and defaults is None:
        return h.error(400, f"{full_name} is not parameterized")
    given = {k: v[-1] for k, v in query.items()}
    if h.body and "form-urlencoded" in h.headers.get("Content-Type", ""):
        given.update({k: v[-1] for k, v in parse_qs(h.body.decode("utf-8")).items()})
    parameters = {key: given.get(key, default) for key, default in (defaults or {}).items()}
    fake = h.fake
    with fake.lock:
        build = Build(len(job.builds) + 1, parameters, f"Started by user {h.user.name}")
        job.builds.append(build)
        queue_id = next(fake.queue_ids)
        fake.queue[queue_id] = (full_name, build.number)
    h.send(201, headers={"Location": f"{fake.url}/queue/item/{queue_id}/"})


def view(h, s: list[str], query: dict[str, list[str]], tree: dict[str, Any] | None) -> None:
    """Answer the top-level views: list and read (View/Read), create, configure and delete."""
    fake = h.fake
    if s == ["createView"]:
        return create_view(h, query.get("name", [""])[0])
    if len(s) < 2 or s[1] not in fake.views:
        return h.error(404, "Not Found")
    if h.refuse("View/Read"):
        return
    name, found, rest = s[1], fake.views[s[1]], s[2:]
    if rest == ["api", "json"] and h.command != "POST":
        info = shapes.view_info(fake.url, name, found, all_jobs(fake.jobs), name == fake.primary_view)
        return h.json(shapes.filtered(info, tree) if tree is not None else info)
    if rest == ["config.xml"] and h.command != "POST":
        return h.send(200, found.config, "application/xml")
    if rest == ["config.xml"]:
        if h.refuse("View/Configure"):
            return
        problem = bad_config(h.body, (found.root,))
        if problem:
            return h.error(500, f"Failed to parse the configuration of view {name}: {problem}")
        found.config = saved_form(h.body, fake.plugin_versions())
        return h.send(200)
    if rest == ["doDelete"] and h.command == "POST":
        if h.refuse("View/Delete"):
            return
        if name == fake.primary_view:
            return h.error(400, "Cannot delete the primary view")
        del fake.views[name]
        return h.send(302, headers={"Location": f"{fake.url}/"})
    h.error(404, "Not Found")


def create_view(h, name: str) -> None:
    if h.command != "POST":
        return h.error(405, "Method Not Allowed")
    if h.refuse("View/Create"):
        return
    if refuse_new(h, name, name in h.fake.views, "view"):
        return
    problem = bad_config(h.body, VIEW_CLASSES)
    if problem:
        return h.error(500, f"Failed to parse the configuration of view {name}: {problem}")
    root = parse(h.body)
    field = root.find("name")
    if field is not None:
        field.text = name  # the view takes the name it is created under
    h.fake.views[name] = View(saved_form(ET.tostring(root), h.fake.plugin_versions()))
    h.send(200)
