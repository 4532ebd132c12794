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
from dataclasses import dataclass, field
from functools import cached_property

import flask
from azureml_inference_server_http.api.aml_response import AMLResponse

from tfscoring import __version__, log, warmup
from tfscoring.batching import cost
from tfscoring.batching.batcher import Batcher
from tfscoring.batching.budget import InflightBudget, Reservation
from tfscoring.batching.calls import SessionCalls
from tfscoring.config import Settings
from tfscoring.errors import DeviceFailed, PayloadTooLarge, ScoringError, ServiceUnavailable
from tfscoring.http import responses, routes
from tfscoring.http.auth import require_key
from tfscoring.http.body import check_declared, discard_unread, read_body
from tfscoring.interface import Interface
from tfscoring.observability.collection import DataCollection
from tfscoring.observability.metrics import Metrics
from tfscoring.observability.observer import RequestObserver
from tfscoring.observability.record import RequestRecord
from tfscoring.observability.requestlog import RequestLog
from tfscoring.observability.tracing import Tracing
from tfscoring.process import workerstate
from tfscoring.protocols import registry, swagger
from tfscoring.protocols.codec import Answer, Codec, Decoded
from tfscoring.protocols.limits import Limits
from tfscoring.protocols.metadata import metadata
from tfscoring.tf.model import GraphModel


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
    # Each request's log line, metrics and span; a test's application keeps its metrics in its process.
    request_observer: RequestObserver = field(default_factory=RequestObserver.local)

    @classmethod
    def build(cls, settings: Settings) -> Application:
        """Load the model, warm it up and assemble the parts around it (StartupError: the worker cannot serve)."""
        served = settings.served_folder()  # read once: the labels of every metric, log line, span and answer
        # Pinned from here on, so that the model loaded is the version labelled, whatever version folder appears next.
        settings = settings.model_copy(update={"model_version": served.version, "model_name": served.name})
        # First of the parts: before anything imports prometheus_client.
        metrics = Metrics.setup(settings.prometheus_multiproc_dir, served.name, served.version)
        state = workerstate.WorkerState(settings.worker_state_dir, settings.session_hang_s)
        state.start()  # "loading" for the startup probe, from now on
        model = GraphModel.load(settings)
        calls = SessionCalls(model.predict, model.max_batch_rows, metrics)  # the one place batches become calls
        model.warm_up(calls.predict)  # through the calls serving makes: a size the device cannot take is learnt now
        budget = InflightBudget(settings.inflight_budget)
        interface = Interface(
            served.name,
            served.version,
            model.inputs,
            model.outputs,
            model.signature_key,
            settings.data_answer,
            model.platform,
        )
        # Then the requests shipped beside the model, decoded and scored as /score would (StartupError: one fails).
        log.info(
            "warm-up requests: %s",
            warmup.run(
                served.path,
                interface,
                _limits(settings),
                calls.predict,
                settings.warmup_max_requests,
                settings.max_request_bytes,
            ),
        )
        swagger.install(swagger.documents(interface))  # what azmlinfsrv serves at /swagger.json, read after init()
        batcher = Batcher(
            calls,
            max_delay_s=settings.max_batch_delay_ms / 1e3,
            max_queue_rows=settings.queue_rows,
            max_wait_s=settings.max_queue_wait_ms / 1e3,
            observer=metrics,
        )
        request_log = RequestLog.configure(settings.log_requests, metrics.log_lines_dropped)
        tracing = Tracing.configure(settings.otlp_traces, settings.otel_service_name or interface.model_name)
        collection = None
        if settings.data_collection:
            collection = DataCollection(
                interface, settings.data_collection_sample, settings.data_collection_max_bytes, metrics
            )
            collection.start()
        request_observer = RequestObserver(metrics, tracing, request_log)
        app = cls(settings, model, interface, batcher, budget, state, collection, request_observer)
        log.info(
            "API key %s; metrics %s; request log: %s; in-flight budget %d MiB; traces: %s; data collection: %s",
            "required (SCORING_API_KEY)" if settings.api_key else "not required",
            metrics.start_worker(
                settings.metrics_bind, settings.metrics_port, model.device, settings.cuda_visible_devices
            ),
            settings.log_requests,
            budget.capacity >> 20,
            tracing.description,
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
            return responses.labelled(responses.options(), self.model_headers)
        path = request.headers.get(routes.PATH_HEADER)  # an Open Inference Protocol path, through the front door
        with self.request_observer.recording(request, path or request.path) as record:  # also for errors
            if path:
                response = self._route(path, request, record)
            else:
                reads = request.method in ("GET", "HEAD")  # HEAD: GET's headers, the server drops the body
                response = _answered(metadata(self.interface)) if reads else self._score(request, record)
            record.status = response.status_code
            # Which model and version answered, on every answer; CORS: a page may read them, x-request-id and
            # Retry-After.
            return responses.labelled(responses.exposed(response), self.model_headers)

    def _route(self, path: str, request: flask.Request, record: RequestRecord):
        try:
            route = routes.resolve(path, request.method, self.interface)  # 404 for another model, 405
        except ScoringError as err:
            record.error = err.message
            discard_unread(request)
            return responses.error(err)
        if route.action in registry.BY_ROUTE:  # a form of its own path (the Open Inference Protocol's infer)
            return self._score(request, record, route.action)
        if route.action == "metadata":
            return _answered(metadata(self.interface))
        if route.action == "ready":
            return routes.ready(self.interface)
        if route.action == "config":
            return routes.config(self.interface, self.model.max_batch_rows)
        return routes.server_metadata(__version__)

    def _score(self, request: flask.Request, record: RequestRecord, route: str | None = None):
        settings, interface = self.settings, self.interface
        try:
            require_key(request.headers.get("Authorization"), settings.api_key)  # 401, before the body is read
            size = check_declared(request, settings.max_request_bytes)  # 405, 413 from the headers alone
            codec = registry.find(request.mimetype, request.headers, route)  # the request's form
            # A first weight from the declared size; each step below resizes it to its own bound before it runs.
            weight = size * codec.first_weight(interface)
            with self.budget.reserve(weight) as reservation:  # 503 when the worker's memory in flight is taken
                record.reserved_bytes = reservation.weight
                with self.batcher.expecting():  # a batch being formed may wait for this request's rows
                    body = read_body(request, settings.max_request_bytes)  # 400 when cut short, 413
                    decoded = self._decode(codec, body, reservation, record)
                    del body
                _hold(
                    reservation, record, cost.decoded_bytes(decoded.arrays, interface, decoded.graph_bytes)
                )  # arrays, batch, outputs
                record.rows = decoded.rows
                prediction = self.batcher.predict(decoded.arrays)  # with concurrent requests: 503 if overloaded
                stats = prediction.stats  # how its rows were batched, for the log line and the span
                record.batch_rows, record.queue_ms = stats.batch_rows, stats.queue_ms
                record.session_ms = stats.session_ms
                outputs = prediction.result()  # or the error that scoring them raised
                _hold(reservation, record, cost.scored_bytes(decoded.arrays, outputs), refuse=False)  # free shapes
                if self.collection:  # a sample to Azure ML's data collector, off the request path
                    self._collect(decoded.arrays, outputs)
                return _answered(codec.encode(decoded, outputs, interface))
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

    def _decode(self, codec: Codec, body: bytes, reservation: Reservation, record: RequestRecord) -> Decoded:
        """Parse and validate (400, 413), the bound of the codec's expensive step reserved (503) before it runs."""

        def reserve(bound: int) -> None:  # the body, and what the step takes besides
            _hold(reservation, record, len(body) + bound)

        return codec.decode(body, self.interface, self.limits, reserve)

    @cached_property
    def model_headers(self) -> dict[str, str]:
        """X-Model-Name and X-Model-Version: the model and version this worker serves."""
        return responses.model_headers(self.interface)

    @cached_property
    def limits(self) -> Limits:
        """What one request may hold, for every codec."""
        return _limits(self.settings)

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


def _limits(settings: Settings) -> Limits:
    return Limits(settings.max_request_rows, settings.image_scale)


def _answered(answer: Answer) -> AMLResponse:
    return AMLResponse(answer.body, 200, answer.headers)


def _hold(reservation: Reservation, record: RequestRecord, weight: int, refuse: bool = True) -> None:
    """Resize the request's reservation to `weight` (503 where it does not fit, unless not `refuse`)."""
    reservation.resize(weight, refuse)
    record.reserved_bytes = max(record.reserved_bytes or 0, weight)


def _request_id() -> str:
    # azmlinfsrv sets g.request_id from x-request-id (or a new uuid) and echoes it in the response headers.
    return getattr(flask.g, "request_id", "") or str(uuid.uuid4())
