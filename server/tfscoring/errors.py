"""The few error types of the service, each carrying the HTTP status it maps to.

Client mistakes and overload are `ScoringError`s and become a 4xx or 503 JSON
body `{"error": "..."}` in responses.error(); anything else that escapes run() is a
bug and becomes a 500 with a request id (see score.py).  `StartupError` is
raised by init() and stops the server with one log line.
"""

from __future__ import annotations


class ScoringError(Exception):
    """A request the service refuses; the message is shown to the client."""

    status_code = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ScoringError):
    status_code = 400


class RowsRefused(BadRequest):
    """The graph refused the request's values (TensorFlow's InvalidArgumentError: an index out of range, a
    shape its ops cannot take); batched with others, the request is scored again on its own (batching/batcher.py)."""

    def __init__(self, reason: str):
        super().__init__(f"the model refused this request's values: {reason}")
        self.reason = reason


class OutOfMemory(Exception):
    """A session call the device had no memory for: raised by the model's predict (tf/model.py), handled by the
    session calls (batching/calls.py), which retry the rows in smaller calls; never a client's answer."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # TensorFlow's, for the log


class Unauthorized(ScoringError):
    """SCORING_API_KEY is set and the request does not carry it as `Authorization: Bearer <key>`."""

    status_code = 401


class NotFound(ScoringError):
    """An Open Inference Protocol path names another model, version or action (routes.py)."""

    status_code = 404


class MethodNotAllowed(ScoringError):
    status_code = 405


class PayloadTooLarge(ScoringError):
    status_code = 413


class UnsupportedMediaType(ScoringError):
    """A compressed body (Content-Encoding), which the server does not decompress."""

    status_code = 415


class ServiceUnavailable(ScoringError):
    """Overloaded: the batch queue is full, or a request waited in it past its deadline."""

    status_code = 503


class DeviceFailed(ServiceUnavailable):
    """The worker's device can no longer run the session; the worker is being replaced."""

    def __init__(self, reason: str):
        super().__init__(f"{reason}; this worker is being replaced, retry", {"Retry-After": "5"})


class StartupError(Exception):
    """The service cannot start: configuration, model files or devices are wrong."""
