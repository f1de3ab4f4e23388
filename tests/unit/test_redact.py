"""The redaction layer: every line printed masks URL credentials and every secret the process read."""

from __future__ import annotations

import io

import pytest

from pipeline import config, redact


@pytest.mark.parametrize("line, expected", [
    ("pulling from https://bob:s3cret-pass@reg.example/v2/", "pulling from https://bob:****@reg.example/v2/"),
    ("git clone https://ghp_abcdef123456@github.com/o/r", "git clone https://****@github.com/o/r"),
    ("none in https://github.com/o/r or r/p@sha256:abc", "none in https://github.com/o/r or r/p@sha256:abc"),
], ids=["user-and-password", "token-as-user", "nothing-to-mask"])
def test_url_credentials_are_masked(line, expected):
    assert redact.redact(line) == expected


def test_a_secret_read_is_masked_in_every_line_even_split_across_writes():
    out = io.StringIO()
    with redact.installed():
        import sys

        stream = redact.RedactingStream(out)
        sys.stdout = stream
        token = config.secret("github.token", {"PINOTAGE_GITHUB_TOKEN": "ghp_Zx81Yw72Vu63\n"})
        assert token == "ghp_Zx81Yw72Vu63\n"
        print("progress: Authorization: token ghp_Zx8", end="")
        print("1Yw72Vu63 sent")
        print("unrelated ghp_ text")
    assert out.getvalue() == "progress: Authorization: token **** sent\nunrelated ghp_ text\n"
    assert redact.redact("ghp_Zx81Yw72Vu63") == "ghp_Zx81Yw72Vu63", "forgotten when the command ends"

