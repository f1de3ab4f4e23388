"""A Jenkins test double: the REST endpoints python-jenkins, Jenkins Job Builder and Pinotage use.

It answers as Jenkins does (status codes, JSON shapes with ``_class``, the ``X-Jenkins``
header, 403 "No valid crumb", 201 + ``Location`` for a queued build), keeps items in
folders, views, nodes and credentials, writes a config.xml back as Jenkins' XStream does,
and refuses anything else with Jenkins' 404 or 405. It knows nothing of Pinotage. Every
request is recorded so that tests can count the writes. docs/test-doubles.md lists what
it models and what it does not.

    python -m tests.fakes.jenkins --port 8080 [--user U --token T] [--crumbs [--crumbs-for-tokens]]
"""

from tests.fakes.jenkins.items import Build, Job, View
from tests.fakes.jenkins.nodes import BUILT_IN, Cloud, Credential, Node, PodTemplate
from tests.fakes.jenkins.security import User
from tests.fakes.jenkins.server import CRUMB_FIELD, PLUGINS, VERSION, FakeJenkins, Request

__all__ = ["BUILT_IN", "CRUMB_FIELD", "PLUGINS", "VERSION", "Build", "Cloud", "Credential", "FakeJenkins", "Job",
           "Node", "PodTemplate", "Request", "User", "View"]
