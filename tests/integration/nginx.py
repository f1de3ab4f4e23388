"""Real nginx on loopback for the config files in scripts/nginx/: a throwaway certificate, a
minimal main config around one site file, start-up and shutdown."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

from tests.conftest import need


def replace_once(conf: str, name: str, replacements: list[tuple[str, str]]) -> str:
    """Move a shipped config to test ports and files, changing nothing else (each old text exactly once)."""
    for old, new in replacements:
        assert conf.count(old) == 1, f"{name} no longer has {old.strip()!r} exactly once"
        conf = conf.replace(old, new)
    return conf


def self_signed(prefix: Path, name: str) -> tuple[Path, Path]:
    """Make a one-day certificate for 127.0.0.1 and localhost; return (certificate, key)."""
    for tool in ("nginx", "openssl"):
        if not shutil.which(tool):
            need("nginx", f"{tool} is not installed")
    cert, key = prefix / f"{name}.crt", prefix / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 20) -> None:
    """Wait until nginx listens (urllib would follow a redirect to port 443, so plain TCP it is)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited {process.returncode}: {log.read_text()[-500:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nginx did not listen on 127.0.0.1:{port} within {timeout_s} s")


@contextlib.contextmanager
def running(prefix: Path, site_conf: str, port: int) -> Iterator[str]:
    """Run nginx with one site file until the block ends; yield what ``nginx -t`` printed."""
    (prefix / "site.conf").write_text(site_conf)
    temp = prefix / "temp"
    temp.mkdir(mode=0o777)
    temp.chmod(0o777)
    (prefix / "nginx.conf").write_text(
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\nworker_processes 1;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n  access_log {prefix}/access.log;\n"
        + "".join(f"  {kind}_temp_path {temp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  include {prefix}/site.conf;\n}}\n")
    argv = ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf")]
    checked = subprocess.run(argv + ["-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(argv + ["-g", "daemon off;"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, process, prefix / "error.log")
        yield checked.stderr
    finally:
        process.terminate()
        process.wait(10)
