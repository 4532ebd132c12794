"""The application: a worker's parts, built once from Settings, and the path of one request through them.

server/score.py, the Azure ML entry script, builds it in init() and hands it every request in run():

    request -> http (auth, declared size, body) -> protocols (decode against the model's interface)
            -> batching (in-flight budget, batcher) -> tf (predict) -> protocols (encode) -> response

observability sees each request through its record (one log line, the metrics, a span).
"""

from __future__ import annotations

import os
import signal
import uuid
from dataclasses import dataclass

import flask

from tfscoring import __version__, log
from tfscoring.batching import cost
from tfscoring.batching.batcher import Batcher
from tfscoring.batching.budget import InflightBudget, Reservation
from tfscoring.config import Settings
from tfscoring.errors import DeviceFailed, PayloadTooLarge, ScoringError, ServiceUnavailable
from tfscoring.http import responses, routes
from tfscoring.http.auth import require_key
from tfscoring.http.body import check_declared, discard_unread, read_body
from tfscoring.interface import Interface
from tfscoring.observability import metrics, requestlog, tracing
from tfscoring.observability.collection import DataCollection
from tfscoring.process import workerstate
from tfscoring.process.sizing import BINARY_WEIGHT, FREE_JSON_WEIGHT, JSON_WEIGHT
from tfscoring.protocols import binary, images, swagger
from tfscoring.protocols import forms as protocols
from tfscoring.tf.model import GraphModel

# Content types with a decoder of their own, for one-input models (answered as the how-to's {"data"} form);
# every other body is read as JSON, in any of the forms of tfscoring/protocols/forms.py.
DECODERS = {
    binary.RAW: lambda body, spec, settings: binary.decode_raw(body, spec, settings.max_request_rows),
    binary.NPY: lambda body, spec, settings: binary.decode_npy(body, spec, settings.max_request_rows),
}


@dataclass
class Application:
    """One worker's parts.  `build` loads them from the settings; a test may assemble them itself."""

    settings: Settings
    model: GraphModel
    interface: Interface
    batcher: Batcher
    budget: InflightBudget
    state: workerstate.WorkerState
    collection: DataCollection | None = None

    @classmethod
    def build(cls, settings: Settings) -> Application:
        """Load the model, warm it up and assemble the parts around it (StartupError: the worker cannot serve)."""
        metrics.setup(settings.prometheus_multiproc_dir)  # first: before anything imports prometheus_client
        state = workerstate.WorkerState(settings.worker_state_dir, settings.session_hang_s)
        state.start()  # "loading" for the startup probe, from now on
        model = GraphModel.load(settings)
        model.warm_up()
        budget = InflightBudget(settings.inflight_budget)
        interface = Interface(
            *settings.served_name, model.inputs, model.outputs, model.signature_key, settings.data_answer
        )
        swagger.install(swagger.documents(interface))  # what azmlinfsrv serves at /swagger.json, read after init()
        batcher = Batcher(
            model.run,
            max_batch_rows=model.max_batch_rows,
            max_delay_s=settings.max_batch_delay_ms / 1e3,
            max_queue_rows=settings.queue_rows,
            max_wait_s=settings.max_queue_wait_ms / 1e3,
        )
        requestlog.configure(settings.log_requests)
        collection = None
        if settings.data_collection:
            collection = DataCollection(interface, settings.data_collection_sample, settings.data_collection_max_bytes)
            collection.start()
        app = cls(settings, model, interface, batcher, budget, state, collection)
        log.info(
            "API key %s; metrics %s; request log: %s; in-flight budget %d MiB; traces: %s; data collection: %s",
            "required (SCORING_API_KEY)" if settings.api_key else "not required",
            metrics.start_worker(
                settings.metrics_bind, settings.metrics_port, model.device, settings.cuda_visible_devices
            ),
            settings.log_requests,
            budget.capacity >> 20,
            tracing.configure(settings.otlp_traces, settings.otel_service_name or interface.model_name),
            f"a share of {settings.data_collection_sample:g}, where Azure ML's collector is set up"
            if collection
            else "off",
        )
        model.on_failure = app._replace_worker
        state.serving(
            lambda: workerstate.load(batcher.queued_rows, settings.queue_rows, budget.used, budget.capacity),
            model.call_age,
        )
        return app

    def handle(self, request: flask.Request) -> flask.Response:
        """Answer one request to POST/GET /score, or to an Open Inference Protocol path through the front door."""
        if request.method == "OPTIONS":
            return responses.options()
        with requestlog.observed(request) as record:  # one log line and the metrics, also for errors
            path = request.headers.get(routes.PATH_HEADER)  # an Open Inference Protocol path, through the front door
            if path:
                response = self._route(path, request, record)
            else:
                reads = request.method in ("GET", "HEAD")  # HEAD: GET's headers, the server drops the body
                response = protocols.metadata(self.interface) if reads else self._score(request, record)
            record.status = response.status_code
            return responses.exposed(response)  # CORS: a page may read x-request-id and Retry-After

    def _route(self, path: str, request: flask.Request, record: requestlog.RequestRecord):
        try:
            route = routes.resolve(path, request.method, self.interface)  # 404 for another model, 405
        except ScoringError as err:
            record.error = err.message
            discard_unread(request)
            return responses.error(err)
        if route.action == "infer":
            return self._score(request, record, oip=True)
        if route.action == "metadata":
            return protocols.metadata(self.interface)
        if route.action == "ready":
            return routes.ready(self.interface)
        if route.action == "config":
            return routes.config(self.interface, self.model.max_batch_rows)
        return routes.server_metadata(__version__)

    def _score(self, request: flask.Request, record: requestlog.RequestRecord, oip: bool = False):
        settings, interface = self.settings, self.interface
        try:
            require_key(request.headers.get("Authorization"), settings.api_key)  # 401, before the body is read
            size = check_declared(request, settings.max_request_bytes)  # 405, 413 from the headers alone
            header_length = request.headers.get(protocols.HEADER_LENGTH)  # binary tensors: Open Inference Protocol
            form = "json" if oip or header_length is not None else _body_form(request.mimetype)
            # A first weight from the declared size; each step below resizes it to its own bound before it runs.
            json_weight = JSON_WEIGHT if interface.bounded_json else FREE_JSON_WEIGHT
            weight = size * {"json": json_weight}.get(form, BINARY_WEIGHT)
            with self.budget.reserve(weight) as reservation:  # 503 when the worker's memory in flight is taken
                record.reserved_bytes = reservation.weight
                with self.batcher.incoming():  # a batch being formed may wait for this request's rows
                    body = read_body(request, settings.max_request_bytes)  # 400 when cut short, 413
                    decoded = self._decode(body, request.mimetype, form, header_length, oip, reservation, record)
                    del body
                _hold(reservation, record, cost.decoded_bytes(decoded.rows, interface))  # arrays, batch, outputs
                record.rows = len(decoded.rows[0])
                outputs = self.batcher.predict(decoded.rows, record)  # with concurrent requests: 503 if overloaded
                _hold(reservation, record, cost.scored_bytes(decoded.rows, outputs), refuse=False)  # free shapes
                if self.collection:  # a sample to Azure ML's data collector, off the request path
                    self._collect(decoded.rows, outputs)
                return protocols.answer(decoded, outputs, interface)  # encode
        except ScoringError as err:
            record.error = err.message
            if isinstance(err, ServiceUnavailable) and not isinstance(err, DeviceFailed):
                self.state.refused()  # overload: readiness may drop
            if err.status_code != PayloadTooLarge.status_code:
                discard_unread(request)  # so that the answer reaches the client before the connection closes
            return responses.error(err)
        except TimeoutError:
            raise  # the server's SCORING_TIMEOUT_MS alarm: azmlinfsrv answers it with its own timeout message
        except Exception:
            request_id = _request_id()
            log.exception("request %s failed", request_id)
            record.error = "internal error"
            return responses.internal_error(request_id)

    def _decode(
        self,
        body: bytes,
        mimetype: str,
        form: str,
        header_length: str | None,
        oip: bool,
        reservation: Reservation,
        record: requestlog.RequestRecord,
    ) -> protocols.Request:
        """Parse and validate (400, 413), each decoder's cost bounded from the body's bytes and reserved (503)
        before the expensive step."""
        settings, interface = self.settings, self.interface
        if form == "json":
            fast = protocols.decode_fast(  # the how-to's rows, in C
                body,
                interface,
                settings.max_request_rows,
                header_length,
                oip,
                lambda cost: _hold(reservation, record, len(body) + cost),
            )
            if fast:
                return fast
            counts = protocols.check_json_body(body, interface, settings.max_request_rows, header_length)  # 400, 413
            _hold(reservation, record, len(body) + protocols.parse_cost(counts, interface))
            return protocols.decode_json(body, interface, settings.max_request_rows, header_length, oip, counts=counts)
        spec = protocols.only_input(interface, f"a {mimetype} body")
        if form == "image":
            header = images.inspect(body, spec)  # the header alone: size, frames, structure (400, 413)
            _hold(reservation, record, len(body) + header.decoded_bytes)
            rows = images.decode(header, spec, settings.image_scale)
        else:
            _hold(reservation, record, (BINARY_WEIGHT + 1) * len(body))  # the body, its array, one conversion
            rows = DECODERS[mimetype](body, spec, settings)
        return protocols.Request((rows,), protocols.Form.HOWTO)

    def _collect(self, inputs, outputs) -> None:
        """Offer a scored request to the data collection: whatever happens there, the request is answered."""
        try:
            self.collection.offer(_request_id(), inputs, outputs)
        except Exception:
            log.exception("data collection: a request could not be offered")

    def _replace_worker(self, reason: str) -> None:
        """The device failed for good: report it (readiness drops) and stop this worker gracefully.

        SIGTERM is gunicorn's own graceful stop: the worker takes no new connection, the requests it holds
        are answered (503, the model refuses to run), and the master forks a replacement with a fresh session.
        """
        self.state.failed(reason)
        os.kill(os.getpid(), signal.SIGTERM)


def _body_form(mimetype: str) -> str:
    """How a body of this content type is decoded: "image", "binary" (raw, .npy) or "json" (anything else)."""
    if mimetype in images.CONTENT_TYPES:
        return "image"
    return "binary" if mimetype in DECODERS else "json"


def _hold(reservation: Reservation, record: requestlog.RequestRecord, weight: int, refuse: bool = True) -> None:
    """Resize the request's reservation to `weight` (503 where it does not fit, unless not `refuse`)."""
    reservation.resize(weight, refuse)
    record.reserved_bytes = max(record.reserved_bytes or 0, weight)


def _request_id() -> str:
    # azmlinfsrv sets g.request_id from x-request-id (or a new uuid) and echoes it in the response headers.
    return getattr(flask.g, "request_id", "") or str(uuid.uuid4())
