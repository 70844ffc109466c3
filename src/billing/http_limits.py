"""Request size limits: a body over 1 MiB is refused with 413 ``payload_too_large`` before
any of the app sees it (routing, authentication, JSON parsing, the admin panel, the
sandbox, webhooks).

Headers are bounded by the HTTP server, before a request exists at all: see
``MAX_HEADER_BYTES`` and ``billing serve``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing.errors import problem_response

MAX_BODY_BYTES = 1024 * 1024
# Request line and headers together. A viewer's JWT is a few KB; proxies stop at 8-64 KB.
MAX_HEADER_BYTES = 64 * 1024


class BodySizeLimit:
    """Reads the body before the app runs, up to ``max_bytes``, and hands it on whole.

    A declared ``Content-Length`` over the limit is refused before a byte of the body is
    read; a chunked body is refused as soon as it passes the limit, so at most
    ``max_bytes`` are ever held. Reading first, rather than counting while the app reads,
    makes the answer the same on every route, including those that never read their body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        ended: Message | None = None  # what ended the read early: the client went away
        while True:
            message = await receive()
            if message["type"] != "http.request":
                ended = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), ended, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"a request body may be at most {self.max_bytes} bytes"
        response = problem_response(Request(scope), 413, "payload_too_large", detail)
        await response(scope, receive, send)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length; counting still applies
    return None


def _replay(body: bytes, ended: Message | None, receive: Receive) -> Receive:
    """The body as one message, then the server's own messages (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if ended is not None:
                return ended
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
