"""Constants the supervisor (serve.py, frontdoor.py), nginx.conf.in, gunicorn's master (gunicorn_conf.py) and the
workers share.

This module imports nothing, so that none of them pulls in Flask, azmlinfsrv or TensorFlow for a constant.
"""

# The longest client-supplied text in any log line: the request log's fields (requestlog.FIELD_CHARS), gunicorn's
# access line and "Invalid request" warning (gunicorn_conf.py), OpenTelemetry's warnings about a client's trace
# headers (tracing.py), and nginx's URI in its own line (frontdoor.py fills nginx.conf.in's @FIELD_CHARS@).  With
# fields this short a line stays under PIPE_BUF (4 KiB), so one write of it to a pipe is never interleaved.
FIELD_CHARS = 300

# With CORS on (AML_CORS_ORIGINS), a browser page reads only the answer headers listed here: the request ids,
# Retry-After, and the model and version that answered (http/responses.py's MODEL_HEADERS).  responses.py puts it
# on the script's answers (flask_cors, azmlinfsrv's, lists none); behind the front door nginx sets it on every answer
# to an allowed origin (frontdoor.py).
CORS_EXPOSE = "x-request-id, x-ms-request-id, x-ms-client-request-id, retry-after, x-model-name, x-model-version"

# The Open Inference Protocol path a request asked for, in a header of the request nginx hands to POST/GET /score
# (http/routes.py): nginx.conf.in sets it (frontdoor.py fills its @PATH_HEADER@), clearing whatever a client sent.
PATH_HEADER = "X-Tfscoring-Path"
