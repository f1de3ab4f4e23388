"""Test doubles of the services no package registry here offers, and what they share."""

from __future__ import annotations

import json
from typing import Any


def send_json(handler: Any, code: int, body: Any) -> None:
    """Answer an http.server request with a JSON body and its length."""
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
