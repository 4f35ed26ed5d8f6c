"""uvicorn's websocket protocol, with Odoo's answer to a wrong protocol version.

A handshake whose Sec-WebSocket-Version is not 13 gets 426 Upgrade Required naming the
version the server speaks (RFC 6455 section 4.4; Odoo 16+ `UpgradeRequired`); the
`websockets` library would answer 400 without it. Everything else is uvicorn's.
"""

from __future__ import annotations

from http import HTTPStatus

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

SUPPORTED_VERSION = "13"


class Engine(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        versions = event.headers.get_all("Sec-WebSocket-Version")
        if not versions or versions == [SUPPORTED_VERSION]:
            super().handle_connect(event)  # a missing header is the library's 400
            return
        response = self.conn.reject(
            HTTPStatus.UPGRADE_REQUIRED,
            f"unsupported websocket version; this server speaks {SUPPORTED_VERSION}\n",
        )
        response.headers["Sec-WebSocket-Version"] = SUPPORTED_VERSION
        self.handshake_initiated = self.handshake_complete = self.close_sent = True
        self.conn.send_response(response)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()
