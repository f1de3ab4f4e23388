"""The local target's front configuration: what it routes to, read back from the text it wrote."""

from __future__ import annotations

import pytest

from pipeline.targets import front


@pytest.mark.parametrize("upstream, listen", [
    (front.Upstream("pinotage-slides-0123456789ab-a1b2c3", "127.0.0.1", 41001), ("127.0.0.1", 8080)),
    (front.Upstream("pinotage-other-fedcba987654-000000", "127.0.0.1", 5), ("0.0.0.0", 80)),
], ids=["loopback", "every-interface"])
def test_the_configuration_names_its_upstream_and_listens_where_asked(upstream, listen):
    conf = front.render(upstream, listen_host=listen[0], listen_port=listen[1])
    assert front.live_name(conf) == upstream.name
    assert f"server {upstream.host}:{upstream.port};" in conf
    assert f"listen {listen[0]}:{listen[1]};" in conf
    assert f"add_header {front.RELEASE_HEADER} {upstream.name} always;" in conf


@pytest.mark.parametrize("conf", ["", "daemon off;\n", "# live: \n", "# something else\n# live: x\n"],
                         ids=["empty", "no-comment", "blank-name", "not-first-line"])
def test_a_configuration_without_the_live_line_names_nothing(conf):
    assert front.live_name(conf) is None
