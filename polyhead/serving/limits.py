"""What a request may be, and the clear 4xx it gets when it is not.

Every refusal is a `RequestError(status, message)`; the app turns it into `{"error": message}`
with that status (the error shape both the KServe v2 and TF-Serving REST protocols use):

    400  bad JSON, a wrong field or shape (the message names the field), not an image,
         a truncated image, a URL that is refused or cannot be fetched
    404  unknown model name or version
    413  body over --max-bytes, more instances than --max-instances, an image over the pixel
         limit (found from its header), a URL's content over the size cap
    415  a content type (or content encoding) the endpoint does not take
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from typing import Any

from polyhead.errors import PolyheadError

MIB = 1024 * 1024


class RequestError(PolyheadError):
    """A request the server refuses; `status` is the HTTP status code."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 16 * MIB  # request body (after decompression, if compressed)
    max_instances: int = 64  # images per request
    max_pixels: int | None = None  # per image, from its header; None: Pillow's MAX_IMAGE_PIXELS
    allow_private_urls: bool = False  # fetch URLs on loopback / private / link-local addresses
    url_timeout_s: float = 10.0
    max_redirects: int = 3


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` gets 413 before the app sees it.

    A declared Content-Length over the limit is refused without reading the body; otherwise the
    body is read (up to the limit) and replayed to the app, so a chunked upload cannot slip past."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send, int(declared))
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._too_large(send, None)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send, declared: int | None) -> None:
        size = f"{declared} bytes" if declared is not None else "more"
        body = error_body(f"request body is {size}, over the limit of {self.max_bytes} bytes (--max-bytes)")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def media_type(content_type: str | None) -> str:
    """'Application/JSON; charset=utf-8' -> 'application/json'; missing -> ''."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def require_media_type(content_type: str | None, accepted: tuple[str, ...]) -> str:
    """The request's media type if it is one of `accepted` ('' stands for no Content-Type), else 415."""
    found = media_type(content_type)
    if found in accepted or any(a.endswith("/*") and found.startswith(a[:-1]) for a in accepted):
        return found
    shown = ", ".join(a for a in accepted if a) + (" (or none)" if "" in accepted else "")
    raise RequestError(415, f"Content-Type {found or '(none)'!r} is not accepted here; send {shown}")


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo a gzip / deflate Content-Encoding, refusing output over `limit` bytes (413)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise RequestError(415, f"Content-Encoding {encoding!r} is not accepted; send gzip, deflate or none")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise RequestError(400, f"request body is not valid {encoding} data: {exc}") from None
    if len(out) > limit:
        raise RequestError(413, f"request body inflates to more than the limit of {limit} bytes (--max-bytes)")
    return out


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None


def check_instances(count: int, limits: Limits, field: str) -> None:
    if count == 0:
        raise RequestError(400, f"{field}: no images in the request")
    if count > limits.max_instances:
        raise RequestError(413, f"{field}: {count} images, over the limit of {limits.max_instances} per request "
                                f"(--max-instances); split the request")
