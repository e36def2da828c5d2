"""What a request body may be: at most HTTP_MAX_BODY_BYTES (else 413, before it
is parsed), and JSON on the operations that read JSON (else 415)."""

from fastapi import Depends, HTTPException, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import problem

TOO_LARGE = "The request body is larger than the server accepts ({limit} bytes)."


class BodySizeLimit:
    """Refuse a request body over the limit with 413 before the app reads it:
    at once when its Content-Length says so, else (a chunked body) as soon as
    the bytes received pass the limit, so a large body is never held in memory.

    The limit is `app.state.max_body_bytes`, set from the settings (main.py).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int = scope["app"].state.max_body_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response = problem(413, TOO_LARGE.format(limit=limit))
            await response(scope, receive, send)
            return

        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised where the app reads the body; errors.http_error
                    # answers it like any other HTTPException.
                    raise HTTPException(413, TOO_LARGE.format(limit=limit))
            return message

        await self.app(scope, receive_within_limit, send)


def is_json(content_type: str) -> bool:
    """application/json or any application/...+json, as FastAPI decides what to parse."""
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def require_json(request: Request) -> None:
    # FastAPI leaves a body of any other type unparsed and would answer 422 for
    # it; the client's mistake is the type, so say that.
    if await request.body() and not is_json(request.headers.get("content-type", "")):
        raise HTTPException(
            415,
            "The request body must be JSON, sent as Content-Type: application/json.",
        )


# For the `dependencies=` of every operation that reads a JSON body.
JsonBody = Depends(require_json)
