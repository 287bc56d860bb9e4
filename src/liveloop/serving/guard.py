"""ASGI guard in front of the BentoML app: who may write, which content type, how large a body.

It answers a bad request itself (a JSON 4xx) before BentoML parses anything, so a rejected request never reaches
an endpoint and changes nothing. The body is read here, counted as it streams (declared length or chunked), and
handed to the app whole: BentoML turns an exception raised from inside `receive` into a 500, so stopping an
oversized body half-way through the app is no option.

Writes (/feedback, /items) change the catalogue and the next training batch: with LIVELOOP_API_TOKEN set they need
it as a bearer token; without one the service only binds to loopback (`check_bind`, run before any worker starts).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import re
from pathlib import Path

TOKEN_ENV = "LIVELOOP_API_TOKEN"
MIN_TOKEN_LENGTH = 16
JSON_ROUTES = frozenset({"/recommend", "/score", "/feedback", "/items"})
WRITE_ROUTES = frozenset({"/feedback", "/items"})
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")  # RFC 6750 b64token: what fits in an Authorization header
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")


class BindError(SystemExit):
    """The service must not start as configured (exits `bentoml serve` with the message)."""


def write_token() -> str | None:
    """The configured write token (environment only, never a file), or None; a weak one is refused."""
    token = os.environ.get(TOKEN_ENV) or None
    if token is not None and (len(token) < MIN_TOKEN_LENGTH or not _TOKEN_CHARS.match(token)):
        raise BindError(f"{TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 . _ ~ + / = - "
                        "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return token


def bind_problem(host: str, token: str | None) -> str | None:
    """Why serving on `host` is refused (a non-loopback address without a write token), or None."""
    if token is not None:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"refusing to serve on {host}: without {TOKEN_ENV} anyone who can reach this address could write to "
            f"/feedback and /items (the catalogue and the next training batch). Set {TOKEN_ENV} (writes then need "
            f"`Authorization: Bearer <token>`) or bind to 127.0.0.1.")


def check_bind() -> None:
    """Raise BindError unless the host `bentoml serve` is about to bind is allowed with the configured token."""
    import click
    from bentoml._internal.configuration.containers import BentoMLContainer

    ctx = click.get_current_context(silent=True)  # the `bentoml serve` command: --host / BENTOML_HOST
    host = (ctx.params.get("host") if ctx is not None else None) or BentoMLContainer.http.host.get()
    problem = bind_problem(str(host), write_token())
    if problem:
        raise BindError(problem)


def content_type_problem(value: str | None) -> tuple[int, str] | None:
    """(status, why) for a content type the JSON endpoints cannot take: 400 if malformed, 415 if another type."""
    if value is None or not value.strip():
        return 415, "no content-type: send the body as application/json"
    media, *params = [part.strip() for part in value.split(";")]
    media = media.lower()
    if not _MEDIA_TYPE.match(media):
        return 400, f"malformed content-type {value[:100]!r}"
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        return 415, f"unsupported content-type {media!r}: send the body as application/json"
    for param in params:
        name, sep, arg = param.partition("=")
        if not sep or not name.strip():
            if param:
                return 400, f"malformed content-type parameter {param[:100]!r}"
            continue
        if name.strip().lower() == "charset" and arg.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return 415, f"unsupported charset {arg.strip()[:40]!r}: JSON bodies are UTF-8"
    return None


def body_limit() -> int:
    """serve.max_body_bytes from LIVELOOP_PARAMS / ./params.yaml (the default without either)."""
    from liveloop.config import ServeConfig, load_config

    path = Path(os.environ.get("LIVELOOP_PARAMS", "params.yaml"))
    return (load_config(path).serve if path.exists() else ServeConfig()).max_body_bytes


class RequestGuard:
    """ASGI middleware: 401 for writes without the token, 400/415 for content types, 413 for large bodies."""

    def __init__(self, app, max_bytes: int | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.token = write_token()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.max_bytes is None:
            self.max_bytes = body_limit()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        path = scope.get("path", "")
        if path in WRITE_ROUTES and self.token is not None and not self._authorized(headers.get("authorization")):
            return await reply(send, 401, f"{path} needs the write token: Authorization: Bearer <{TOKEN_ENV}>",
                               [(b"www-authenticate", b'Bearer realm="liveloop"')])
        if scope.get("method") == "POST" and path in JSON_ROUTES:
            problem = content_type_problem(headers.get("content-type"))
            if problem:
                return await reply(send, *problem)
        too_large = f"request body larger than {self.max_bytes} bytes (serve.max_body_bytes)"
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await reply(send, 413, too_large)
        chunks, size = [], 0
        while True:  # counts what arrives, whatever the framing (content-length or chunked)
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # the client went away: nobody to answer
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await reply(send, 413, too_large)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the disconnect, as the server would
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    def _authorized(self, header: str | None) -> bool:
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())


async def reply(send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error answer; the connection closes, since the rest of the body may not have been read."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
