"""Read the raw request body, whatever its Content-Type.

curl -d and urllib send application/x-www-form-urlencoded; Flask would parse
such a body as a form and hand back nothing, so the body is read from the
stream before anything else touches it.
"""

from __future__ import annotations

import flask
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import ClientDisconnected

from tfscoring.errors import BadRequest, MethodNotAllowed, PayloadTooLarge, UnsupportedMediaType

ALLOWED_METHODS = "GET, HEAD, POST, OPTIONS"  # GET, HEAD: the model's metadata (protocols.metadata)
# A broken chunked encoding or a body cut short: the client's doing, so a 400, not a 500.
_UNREADABLE = (ParseException, NoMoreData, ClientDisconnected)


def check_declared(request: flask.Request, max_bytes: int) -> int:
    """From the headers alone: the bytes the body may take (Content-Length, else the limit); 405 or 413."""
    if request.method != "POST":
        raise MethodNotAllowed(
            f"{request.method} is not supported on /score; POST a JSON body (GET answers the model's metadata)",
            {"Allow": ALLOWED_METHODS},
        )
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):  # e.g. Triton's client with request_compression_algorithm="gzip"
        raise UnsupportedMediaType(f"Content-Encoding {encoding[:40]!r} is not supported; send the body uncompressed")
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        # Refused from the header alone: a huge body is never read into memory.
        raise PayloadTooLarge(f"body is {declared} bytes; the limit is {max_bytes} bytes (MAX_REQUEST_BYTES)")
    return max_bytes if declared is None else declared


def read_body(request: flask.Request, max_bytes: int) -> bytes:
    """The whole body, once check_declared has passed: 400 when unreadable or cut short, 413 over the limit."""
    declared = request.content_length
    try:
        body = request.stream.read(max_bytes + 1)
    except _UNREADABLE as err:
        raise BadRequest(
            f"body could not be read: {type(err).__name__} (broken chunked encoding or body cut short)"
        ) from None
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes (MAX_REQUEST_BYTES)")
    if declared is not None and len(body) < declared:
        # gunicorn hands over what arrived before the client closed: scoring it would answer fewer rows than sent.
        raise BadRequest(f"body cut short: {len(body)} of the {declared} bytes Content-Length announced arrived")
    return body


def discard_unread(request: flask.Request) -> None:
    """Read and drop what is left of a body refused before it was read (401, 503), in small pieces.

    An answer sent over a body still arriving, followed by a close, makes the kernel reset the
    connection, and the client (or nginx, which then answers 502) may lose the answer.  gunicorn
    itself drains only 64 KiB before closing, so the rest is read here; a body over the limit
    (413 from Content-Length) is not: reading it would take the time the limit is there to save.
    """
    try:
        while request.stream.read(_DISCARD_CHUNK):
            pass
    except _UNREADABLE:
        pass


_DISCARD_CHUNK = 64 * 1024
