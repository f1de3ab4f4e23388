"""Reading pinotage.yaml: find it, parse it safely, walk its settings and profiles, confine its paths.

``pipeline.config`` merges what this yields with the environment and the flags; nothing here
knows the settings' types, only their keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from pipeline.config_values import did_you_mean, short
from pipeline.errors import BadInput

CONFIG_FILE = "pinotage.yaml"
PROFILES_KEY = "profiles"
MAX_CONFIG_BYTES = 256 * 1024  # a real one is a few KiB; the pure-Python YAML parser takes seconds a MiB
SUGGEST_LIMIT = 50

Entry = tuple[str, Any, str]  # ("section.field", value, "file:line")


def find_file(config_path: str | None, environ: Mapping[str, str], cwd: str,
               problems: list[str]) -> Path | None:
    explicit = config_path or environ.get("PINOTAGE_CONFIG")
    if explicit:
        path = Path(cwd, explicit)
        if not path.is_file():
            what = "is a directory, expected" if path.is_dir() else "not a regular file, expected" \
                if path.exists() else "no such"
            problems.append(f"{explicit}: {what} configuration file")
            return None
        return path
    default = Path(cwd, CONFIG_FILE)
    if default.is_dir():
        problems.append(f"{CONFIG_FILE}: is a directory, expected the configuration file")
    return default if default.is_file() else None


def confine(key: str, values: dict[str, Any], root: str, where: str, problems: list[str], *,
            default_context: str) -> None:
    """Note a problem when a path leaves its folder: absolute, a '..' out, or a symlink out."""
    value = values[key]
    base = os.path.join(root, values.get("image.context", default_context)) if key == "image.dockerfile" else root
    if not value:
        return
    if os.path.isabs(value):
        reason = "an absolute path"
    elif os.path.normpath(value).split(os.sep)[0] == os.pardir:
        reason = "a '..' that leaves it"
    elif os.path.commonpath([os.path.realpath(base), os.path.realpath(os.path.join(base, value))]) \
            != os.path.realpath(base):
        reason = "a symlink that leads out of it"
    else:
        return
    inside = "image.context" if key == "image.dockerfile" else "the repository (the folder of pinotage.yaml)"
    problems.append(f"{where}: {key}: {value!r} is {reason}; give a relative path inside {inside}")


def read_file(path: Path, problems: list[str], profiles: dict[str, list[Entry]], known: Mapping[str, type],
              secrets: Mapping[str, str]) -> Iterator[Entry]:
    """Yield the file's entries in file order and fill in each profile's, noting problems as they come.

    ``known`` lists the setting keys, ``secrets`` the secrets' names (refused in a file) and variables.
    """
    import yaml

    from pipeline import files, safe_yaml

    name = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    try:
        text = files.read_text(path, what="configuration file", limit_bytes=MAX_CONFIG_BYTES)
        root = safe_yaml.compose(text, where=name)
    except BadInput as e:
        problems.append(e.message)
        return
    if root is None:
        return
    if not isinstance(root, yaml.MappingNode):
        problems.append(f"{name}:{root.start_mark.line + 1}: expected a mapping of settings")
        return

    sections = {key.split(".")[0] for key in known if "." in key}

    def walk(node: yaml.MappingNode, prefix: str, profile: str = "") -> Iterator[Entry]:
        for key_node, value_node in node.value:
            key = prefix + str(key_node.value)
            where = f"{name}:{key_node.start_mark.line + 1}" + (f" (profile {profile})" if profile else "")
            if key == PROFILES_KEY and not prefix and not profile:
                _read_profiles(value_node, name, walk, profiles, problems)
            elif key in secrets:
                problems.append(f"{where}: {key}: secrets are not read from files"
                                f" (set {secrets[key]} in the environment)")
            elif key in known:
                yield key, _plain(value_node), where
            elif not prefix and key in sections:
                if isinstance(value_node, yaml.MappingNode):
                    yield from walk(value_node, key + ".", profile)
                elif not (isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null")):
                    problems.append(f"{where}: {key}: expected a mapping of settings")
            else:
                candidates = list(known) + sorted(sections) + list(secrets)
                # only the problems printed need a suggestion; a file of 200,000 keys must not take minutes
                guess = did_you_mean(key, candidates) if len(problems) < SUGGEST_LIMIT else ""
                problems.append(f"{where}: unknown key {short(key)!r}{guess}")

    yield from walk(root, "")


def _read_profiles(node: Any, file_name: str, walk: Any, profiles: dict[str, list[Entry]],
                   problems: list[str]) -> None:
    """Collect each named profile's entries from the file's ``profiles:`` mapping."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        problems.append(f"{file_name}:{node.start_mark.line + 1}: profiles: expected a mapping of names to settings")
        return
    for name_node, body in node.value:
        name = str(name_node.value)
        if isinstance(body, yaml.MappingNode):
            profiles[name] = list(walk(body, "", name))
        else:
            problems.append(f"{file_name}:{name_node.start_mark.line + 1}: profiles.{name}:"
                            " expected a mapping of settings")


def _plain(node: Any) -> Any:
    from pipeline import safe_yaml

    return safe_yaml.plain(node)
