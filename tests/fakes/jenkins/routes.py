"""What the double answers at the top level: its info, crumbs, plugins, nodes, labels and credentials.

Items and views are in item_routes. Anything not listed here is refused with Jenkins' 404.
"""

from __future__ import annotations

import secrets
from typing import Any

from tests.fakes.jenkins import item_routes, nodes, shapes
from tests.fakes.jenkins.server import CRUMB_FIELD


def route(h, s: list[str], query: dict[str, list[str]]) -> None:
    """Answer one request whose path is split into segments ``s``."""
    if h.command == "POST" and s == ["j_spring_security_check"]:
        return h.log_in()
    if h.refuse("Overall/Read"):
        return
    tree = shapes.parse_tree(query["tree"][0]) if "tree" in query else None
    if s[:1] == ["job"] or s[:1] == ["view"] or s in (["createItem"], ["createView"]):
        return item_routes.route(h, s, query, tree)
    if s[:1] == ["credentials"] or s[:2] == ["manage", "credentials"]:
        store = s[1:] if s[0] == "credentials" else s[2:]
        if store[:1] != ["store"] or len(store) < 2 or store[1] != "system":
            return h.error(404, "Not Found")
        return credentials(h, "system", store[2:], tree)
    if h.command == "POST":
        return h.error(404, "Not Found")
    if s[:1] == ["computer"]:
        return computer(h, s[1:], tree)
    if len(s) == 4 and s[0] == "label" and s[2:] == ["api", "json"]:
        return answer(h, nodes.label_json(s[1], h.fake.nodes, h.fake.clouds, h.fake.url), tree)
    return top_level(h, s, tree)


def answer(h, data: dict[str, Any], tree: dict[str, Any] | None) -> None:
    h.json(shapes.filtered(data, tree) if tree is not None else data)


def top_level(h, s: list[str], tree: dict[str, Any] | None) -> None:
    fake = h.fake
    if not s:
        return h.send(200, "<html><head><title>Dashboard [Jenkins]</title></head></html>")
    if s == ["api", "json"]:
        info = shapes.root_info(fake, lambda _: h.user.may("Job/Read"))
        return answer(h, info, tree) if tree is not None else h.json(shapes.shallow(info))
    if s == ["crumbIssuer", "api", "json"]:
        if not fake.crumbs:
            return h.error(404, "Not Found")
        crumb = secrets.token_hex(16) if fake.issue_stale_crumbs else fake.crumb
        return h.json({"_class": "hudson.security.csrf.DefaultCrumbIssuer", "crumb": crumb,
                       "crumbRequestField": CRUMB_FIELD})
    if s == ["pluginManager", "api", "json"]:
        return h.json({"_class": "hudson.LocalPluginManager", "plugins": [
            {"active": True, "enabled": True, "hasUpdate": False, "shortName": short, "longName": long,
             "version": version, "dependencies": []} for short, long, version in fake.plugins]})
    if s == ["me", "api", "json"]:
        return h.json({"_class": "hudson.model.User", "id": h.user.name, "fullName": h.user.name})
    if s[:2] == ["queue", "item"] and len(s) == 5 and s[3:] == ["api", "json"] and s[2].isdigit():
        if int(s[2]) not in fake.queue:
            return h.error(404, "Not Found")
        full_name, number = fake.queue[int(s[2])]
        return h.json(shapes.queue_item(fake.url, int(s[2]), full_name, number))
    h.error(404, "Not Found")


def computer(h, s: list[str], tree: dict[str, Any] | None) -> None:
    """Answer /computer/...: the node list, one node, or an agent's config.xml."""
    fake = h.fake
    if s == ["api", "json"]:
        return answer(h, nodes.computer_set_json(fake.nodes, fake.url), tree)
    if len(s) < 2:
        return h.error(404, "Not Found")
    name = nodes.BUILT_IN if s[0] in ("(built-in)", "(master)") else s[0]
    node = next((n for n in fake.nodes if n.name == name), None)
    if node is None:
        return h.error(404, "Not Found")
    if s[1:] == ["api", "json"]:
        return answer(h, nodes.computer_json(node, fake.url), tree)
    if s[1:] == ["config.xml"] and node.name != nodes.BUILT_IN:
        if h.refuse("Computer/Configure"):
            return
        return h.send(200, nodes.node_config(node), "application/xml")
    h.error(404, "Not Found")


def credentials(h, store: str, s: list[str], tree: dict[str, Any] | None) -> None:
    """Answer a credentials store's domain list or one credential: ids and descriptions, never a secret."""
    if h.command == "POST":
        return h.error(405, "Method Not Allowed")  # creating credentials is not modelled
    if len(s) < 2 or s[0] != "domain":
        return h.error(404, "Not Found")
    if h.refuse("Credentials/View"):
        return
    domain = s[1]
    held = [c for c in h.fake.credentials if c.store == store and c.domain == domain]
    if domain != "_" and not held:
        return h.error(404, "Not Found")
    if s[2:] == ["api", "json"]:
        return answer(h, nodes.domain_json(store, domain, held, h.fake.url), tree)
    if len(s) == 6 and s[2] == "credential" and s[4:] == ["api", "json"]:
        found = next((c for c in held if c.id == s[3]), None)
        if found is None:
            return h.error(404, "Not Found")
        return answer(h, nodes.credential_json(found), tree)
    h.error(404, "Not Found")
