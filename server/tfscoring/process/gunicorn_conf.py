"""gunicorn's configuration file for the scoring server: serve.py passes it in GUNICORN_CMD_ARGS (`-c <this file>`).

gunicorn answers the requests it cannot parse itself, before azmlinfsrv or score.py sees them, with an HTML
page (gunicorn.util.write_error): a header value with a control character (`X-Foo: a\\x01b`), which RFC 9110
forbids and gunicorn 27 refuses, is one.  nginx cannot refuse those itself: its parser lets any byte but NUL,
CR and LF through in a header value, and stock Debian nginx has no module that inspects every header.  So the
answer is made JSON here, as every other error of the server is: `{"error": "..."}`, Content-Type
application/json, and an X-Request-Id (gunicorn has not parsed the request's own when it fails in the headers,
so a fresh one; behind nginx, nginx replaces it with the request's id, which it logs).

It also keeps client-supplied text in gunicorn's log lines bounded: its access line (user agent, referer,
request line, for the requests score.py does not log itself) and its "Invalid request" warning cut each
field to FIELD_CHARS.

gunicorn reads this file in the master (azmlinfsrv builds gunicorn's argv itself, but gunicorn reads `-c`
from GUNICORN_CMD_ARGS: gunicorn/app/base.py load_config); the workers it forks inherit the patches.
Only the known gunicorn setting names below are taken from it as settings.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from pathlib import Path

from gunicorn import glogging, util

try:  # azmlinfsrv puts AML_APP_ROOT (server/, serve.py's default) on sys.path before gunicorn reads this file
    from tfscoring.shared import FIELD_CHARS
except ImportError:  # an AML_APP_ROOT elsewhere, and tfscoring not installed: the folder this file is in
    sys.path.append(str(Path(__file__).resolve().parents[1]))
    from tfscoring.shared import FIELD_CHARS


def _json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps({"error": f"{reason.lower()}: {mesg[:FIELD_CHARS]}" if mesg else reason.lower()}) + "\n"
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"X-Request-Id: {uuid.uuid4().hex}\r\nContent-Length: {len(body.encode())}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body.encode())


util.write_error = _json_error  # gunicorn's workers call util.write_error through the module


def _cut(value):
    return value[:FIELD_CHARS] + "..." if isinstance(value, str) and len(value) > FIELD_CHARS else value


class CappedLogger(glogging.Logger):
    """gunicorn's logger, with every field of the access line cut to FIELD_CHARS."""

    def atoms(self, resp, req, environ, request_time):
        return {key: _cut(value) for key, value in super().atoms(resp, req, environ, request_time).items()}


class _CappedMessages(logging.Filter):
    """gunicorn's "Invalid request from ip=...: <what>" quotes what the client sent: cut it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > FIELD_CHARS + 80:
            record.msg, record.args = f"{message[:FIELD_CHARS]}...{message[-60:]}", ()
        return True


logging.getLogger("gunicorn.error").addFilter(_CappedMessages())

logger_class = CappedLogger
