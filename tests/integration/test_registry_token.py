"""Docker Hub's token flow, for real: Debian's docker-registry in token mode behind the issuer in
tests/token_registry.py. The engine's push and Pinotage's registry lookup both meet a Bearer
challenge and trade the login for a token scoped to one repository; a login whose token lacks
``push`` is refused in one line."""

from __future__ import annotations

import io
import secrets
import tarfile

import pytest

from pipeline import config as config_module
from pipeline import image as phases
from pipeline import registry as registry_module
from pipeline.errors import AuthError
from pipeline.state import Image

pytestmark = pytest.mark.integration


@pytest.fixture
def tiny(token_hub, docker_client, docker_cleanup):
    """A one-file image (FROM scratch) tagged for the token registry under a fresh repository."""
    repository = f"pinotage-test/token-{secrets.token_hex(3)}"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY hello /hello\n"), ("hello", repository.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    ref = f"{token_hub.url}/{repository}:1"
    docker_client.images.build(fileobj=context, custom_context=True, tag=ref, rm=True)
    docker_cleanup["images"].append(ref)
    return repository


def a_config(token_hub) -> config_module.Config:
    return config_module.load(environ={}, cwd="/nonexistent", overrides=[f"registry.url={token_hub.url}",
                                                                         "deadlines.push_s=60"])


def login(token_hub, user: str) -> registry_module.Credentials:
    return registry_module.Credentials(user, token_hub.users[user][0], "env PINOTAGE_REGISTRY_PASSWORD")


def test_the_engine_pushes_and_the_lookup_reads_through_scoped_tokens(token_hub, tiny, docker_client):
    lookup = registry_module.RegistryClient(token_hub.url, login(token_hub, "reader"))
    assert lookup.manifest_digest(tiny, "1") is None, "not pushed yet"
    pushed = phases.push(docker_client, a_config(token_hub), Image(name=f"{token_hub.url}/{tiny}", tag="1"), login(token_hub, "pusher"))
    assert pushed.digest.startswith("sha256:")
    assert registry_module.RegistryClient(token_hub.url, login(token_hub, "reader")).manifest_digest(tiny, "1") == pushed.digest
    asked = [(user, scope, granted) for user, scope, granted in token_hub.issued if tiny in scope]
    assert ("reader", f"repository:{tiny}:pull", ["pull"]) in asked, "the lookup asked for pull only"
    assert any(user == "pusher" and "push" in granted for user, _, granted in asked), "the engine got a push token"


def test_the_other_tags_are_the_pushed_manifest_put_under_their_names_with_a_push_token(token_hub, tiny,
                                                                                       docker_client):
    name = f"{token_hub.url}/{tiny}"
    pushed = phases.push(docker_client, a_config(token_hub), Image(name=name, tag="1", tags=("1", "master", "abc")),
                         login(token_hub, "pusher"))
    reader = registry_module.RegistryClient(token_hub.url, login(token_hub, "reader"))
    assert [reader.manifest_digest(tiny, tag) for tag in ("1", "master", "abc")] == [pushed.digest] * 3
    asked = [(user, scope, granted) for user, scope, granted in token_hub.issued if tiny in scope]
    # The engine asks for "push,pull"; this is Pinotage's own client putting the tags.
    assert ("pusher", f"repository:{tiny}:pull,push", ["pull", "push"]) in asked, asked


def test_a_token_without_push_scope_is_one_clear_line(token_hub, tiny, docker_client):
    with pytest.raises(AuthError) as refused:
        phases.push(docker_client, a_config(token_hub), Image(name=f"{token_hub.url}/{tiny}", tag="1"), login(token_hub, "reader"))
    message = refused.value.message
    assert "\n" not in message and refused.value.exit_code == 1
    assert f"the registry refused the push of {token_hub.url}/{tiny}:1" in message
    assert "no push" in message, message
    assert token_hub.users["reader"][0] not in message
    granted = [g for user, scope, g in token_hub.issued if user == "reader" and tiny in scope]
    assert granted and all("push" not in g for g in granted)


def test_a_wrong_password_at_the_token_service_is_refused_by_the_lookup(token_hub):
    wrong = registry_module.Credentials("reader", "not-the-password", "env PINOTAGE_REGISTRY_PASSWORD")
    with pytest.raises(AuthError, match="refused the credentials from env PINOTAGE_REGISTRY_PASSWORD"):
        registry_module.RegistryClient(token_hub.url, wrong).manifest_digest("pinotage-test/any", "1")
