"""The local target's front configuration: what it routes to, read back from the text it wrote."""

from __future__ import annotations

import pytest

from pipeline.targets import front


@pytest.mark.parametrize("upstream", [
    front.Upstream("pinotage-slides-0123456789ab-a1b2c3", "127.0.0.1", 41001, "reg:5000/p/slides@sha256:" + "a" * 64),
    front.Upstream("pinotage-other-fedcba987654-000000", "127.0.0.1", 5),
], ids=["one", "another-image-not-known"])
def test_the_inner_configuration_names_its_upstream_and_listens_on_the_socket(upstream):
    conf = front.render(upstream)
    assert front.live_name(conf) == upstream.name
    assert front.live_image(conf) == upstream.image
    assert f"server {upstream.host}:{upstream.port};" in conf
    assert f"listen unix:{front.SOCKET};" in conf
    assert f"add_header {front.RELEASE_HEADER} {upstream.name} always;" in conf


@pytest.mark.parametrize("listen", [("127.0.0.1", 8080), ("0.0.0.0", 80)], ids=["loopback", "every-interface"])
def test_the_outer_configuration_listens_where_asked_and_passes_to_the_socket(listen):
    conf = front.render_outer(listen_host=listen[0], listen_port=listen[1])
    assert f"listen {listen[0]}:{listen[1]};" in conf
    assert f"server unix:{front.SOCKET};" in conf
    assert front.live_name(conf) is None, "only the inner configuration names a release"


@pytest.mark.parametrize("conf", ["", "daemon off;\n", "# live: \n", "# something else\n# live: x\n"],
                         ids=["empty", "no-comment", "blank-name", "not-first-line"])
def test_a_configuration_without_the_live_line_names_nothing(conf):
    assert front.live_name(conf) is None


@pytest.mark.parametrize("conf", ["", "# live: x\n", "# live: x\ndaemon off;\n", "# image: y\n# live: x\n"],
                         ids=["empty", "live-line-only", "no-image-line", "image-line-first"])
def test_a_configuration_without_the_image_line_names_no_image(conf):
    """A front an earlier version wrote names its container only: the container's label gives the digest."""
    assert front.live_image(conf) == ""
