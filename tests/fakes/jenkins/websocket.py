"""The WebSocket endpoints agents and the CLI use through a reverse proxy: handshake, then echo."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def handshake(handler, path: str) -> None:
    """Answer a WebSocket upgrade on /wsagents or /cli/ws as Jenkins does, then echo frames."""
    key = handler.headers.get("Sec-WebSocket-Key", "")
    if (path.rstrip("/") not in ("/wsagents", "/cli/ws")
            or "upgrade" not in handler.headers.get("Connection", "").lower()
            or handler.headers.get("Sec-WebSocket-Version") != "13" or not key):
        return handler.error(400, "Bad WebSocket handshake")
    if not handler.sign_in():
        return
    if handler.user.name == "anonymous" and handler.fake.users:
        return handler.error(403, "anonymous is missing the Overall/Read permission")
    accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
    handler.record(101)
    handler.send_response(101)
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", accept)
    handler.send_header("X-Jenkins", handler.fake.version)
    handler.end_headers()
    handler.close_connection = True
    _echo_frames(handler)


def _echo_frames(handler) -> None:
    """Echo text and binary frames back until the client closes."""
    handler.connection.settimeout(10)
    read, write = handler.rfile.read, handler.wfile.write
    try:
        while True:
            head = read(2)
            if len(head) < 2:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack(">H", read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", read(8))[0]
            mask = read(4) if head[1] & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(read(length)))
            if opcode == 0x8:
                write(bytes([0x88, len(payload[:125])]) + payload[:125])
                return
            if opcode in (0x1, 0x2):
                header = bytes([0x80 | opcode])
                if len(payload) < 126:
                    header += bytes([len(payload)])
                else:
                    header += bytes([126]) + struct.pack(">H", len(payload))
                write(header + payload)
                handler.wfile.flush()
    except (socket.timeout, ConnectionError):
        return
