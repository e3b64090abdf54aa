"""Sending a `ProxyResponse` over ASGI."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from hitrate.gateway.proxy import ProxyResponse


class ProxyASGIResponse:
    """Sends a ProxyResponse; always runs its on_close, even if the client went away."""

    def __init__(self, response: ProxyResponse):
        self.response = response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self.response
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        try:
            if response.stream is None:
                headers.append((b"content-length", str(len(response.body)).encode()))
                await send({"type": "http.response.start", "status": response.status,
                            "headers": headers})
                await send({"type": "http.response.body", "body": response.body})
                return
            await send({"type": "http.response.start", "status": response.status,
                        "headers": headers})
            async for chunk in response.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass  # client disconnected mid-response
        finally:
            if response.stream is not None:
                await response.stream.aclose()  # type: ignore[attr-defined]
            if response.on_close is not None:
                await response.on_close()
