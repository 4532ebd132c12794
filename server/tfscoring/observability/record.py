"""What one request did: a plain value that the request path fills in, and that the request's log line, the metrics
and its span each read once it is answered (observer.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RequestRecord:
    path: str  # the path the client asked for: /score, or a /v2 path nginx routed here
    # The model and version that answered: what this worker serves (its metrics' labels too).
    model: str = ""
    model_version: str = ""
    # The request as it came, read when the record starts.
    request_id: str | None = None  # azmlinfsrv's (the client's x-request-id, or one of its own); None: it set none
    client_request_id: str = ""  # x-ms-client-request-id, as azmlinfsrv echoes it
    content_type: str = ""  # the client's, of any length
    content_length: int | None = None  # declared; None for a chunked body
    # Filled by the request path.
    status: int = 500
    rows: int = 0
    error: str | None = None  # what the client was told
    # For a request the batcher scored: the largest batch its rows were in, how long it waited for its first batch,
    # and the time of its session calls.
    batch_rows: int | None = None
    queue_ms: float | None = None
    session_ms: float | None = None
    reserved_bytes: int | None = None  # its reservation of the in-flight budget at its largest (budget.py)
    seconds: float = 0.0  # its time in the scoring script, set when it is answered
