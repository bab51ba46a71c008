"""A test MCP server (Python `mcp` SDK, streamable HTTP) whose tools need a bearer credential.

Started by writ's end-to-end tests and benchmarks on a loopback port. Configured by
environment:

  MCP_PORT              the loopback port to listen on (required)
  MCP_AUTH              "none" (no credential needed), "static" (the bearer must equal
                        MCP_TOKEN; its subject is MCP_SUBJECT) or "introspect" (the bearer is
                        checked by RFC 7662 introspection at MCP_INTROSPECT_URL, with HTTP
                        basic client credentials MCP_INTROSPECT_CLIENT_ID/_SECRET if given)
  MCP_CALL_LOG          a file to which each tool call appends one line: "<tool> <subject>"

Tools: `whoami` (the subject behind the credential), `echo` (returns its text) and
`delete_records` (a tool a policy may treat as critical). `POST /test/expire-sessions`
makes every session known so far expired: requests carrying one are answered 404, as the
MCP transport specifies for a session the server has terminated; `GET /test/sessions` says
how many sessions were opened and expired.
"""

import base64
import json
import os
import sys
import urllib.parse
import urllib.request

import uvicorn
from mcp.server.fastmcp import Context, FastMCP

PORT = int(os.environ["MCP_PORT"])
AUTH = os.environ.get("MCP_AUTH", "none")
TOKEN = os.environ.get("MCP_TOKEN", "")
SUBJECT = os.environ.get("MCP_SUBJECT", "static-subject")
INTROSPECT_URL = os.environ.get("MCP_INTROSPECT_URL", "")
INTROSPECT_ID = os.environ.get("MCP_INTROSPECT_CLIENT_ID", "")
INTROSPECT_SECRET = os.environ.get("MCP_INTROSPECT_CLIENT_SECRET", "")
CALL_LOG = os.environ.get("MCP_CALL_LOG", "")

# The subject each accepted bearer token stands for.
SUBJECTS: dict[str, str] = {}
# Session ids seen, and those made expired.
SEEN: set[str] = set()
EXPIRED: set[str] = set()

# MCP_STATELESS=1: no sessions, JSON answers (for benchmarks that call it directly too).
STATELESS = os.environ.get("MCP_STATELESS") == "1"
mcp = FastMCP(
    "writ-test", host="127.0.0.1", port=PORT, stateless_http=STATELESS, json_response=STATELESS
)


def introspect(token: str) -> str | None:
    body = urllib.parse.urlencode({"token": token}).encode()
    request = urllib.request.Request(INTROSPECT_URL, data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    if INTROSPECT_ID:
        basic = base64.b64encode(f"{INTROSPECT_ID}:{INTROSPECT_SECRET}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        claims = json.load(answer)
    if not claims.get("active"):
        return None
    return str(claims.get("sub", ""))


def subject_of(token: str | None) -> str | None:
    if AUTH == "none":
        return "anonymous"
    if not token:
        return None
    if AUTH == "static":
        return SUBJECT if token == TOKEN else None
    try:
        return introspect(token)
    except Exception as error:  # an unreachable introspection endpoint refuses the call
        print(f"introspection failed: {error}", file=sys.stderr)
        return None


def caller(ctx: Context) -> str:
    request = ctx.request_context.request
    header = request.headers.get("authorization", "") if request is not None else ""
    token = header[7:] if header.lower().startswith("bearer ") else ""
    return SUBJECTS.get(token, "anonymous")


def log_call(tool: str, subject: str) -> None:
    if CALL_LOG:
        with open(CALL_LOG, "a", encoding="utf-8") as log:
            log.write(f"{tool} {subject}\n")


@mcp.tool()
def whoami(ctx: Context) -> str:
    """The subject behind the bearer credential this call carried."""
    subject = caller(ctx)
    log_call("whoami", subject)
    return subject


@mcp.tool()
def echo(text: str, ctx: Context) -> str:
    """Returns the text it is given."""
    log_call("echo", caller(ctx))
    return text


@mcp.tool()
def delete_records(table: str, ctx: Context) -> str:
    """Deletes every record of a table (a test stand-in for a critical tool)."""
    log_call("delete_records", caller(ctx))
    return f"deleted all records of {table}"


async def reply(send, status: int, body: bytes, extra=()) -> None:
    extra = list(extra)
    if not any(key == b"content-type" for key, _ in extra):
        extra.append((b"content-type", b"text/plain; charset=utf-8"))
    headers = extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def guarded(app):
    """ASGI middleware: bearer check, expired sessions, the expiry switch."""

    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if scope["path"] == "/test/sessions":
            body = json.dumps({"opened": len(SEEN), "expired": len(EXPIRED)}).encode()
            return await reply(send, 200, body, [(b"content-type", b"application/json")])
        if scope["path"] == "/test/expire-sessions":
            EXPIRED.update(SEEN)
            return await reply(send, 200, b"expired\n")
        session = headers.get("mcp-session-id")
        if session in EXPIRED:
            return await reply(send, 404, b"session expired\n")
        header = headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else None
        subject = subject_of(token)
        if subject is None:
            return await reply(
                send, 401, b"a valid bearer credential is required\n",
                [(b"www-authenticate", b'Bearer error="invalid_token"')],
            )
        if token:
            SUBJECTS[token] = subject

        async def watching_send(message):
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", []):
                    if key.decode().lower() == "mcp-session-id":
                        SEEN.add(value.decode())
            await send(message)

        return await app(scope, receive, watching_send)

    return middleware


if __name__ == "__main__":
    uvicorn.run(guarded(mcp.streamable_http_app()), host="127.0.0.1", port=PORT, log_level="warning")
