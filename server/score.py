"""Azure ML entry script: the how-to's TF1 MNIST model, hardened.

Served by azureml-inference-server-http (azmlinfsrv) unchanged:

    azmlinfsrv --entry_script server/score.py --model_dir models/tf-dnn-mnist/1

init() runs once per gunicorn worker process; run() is called for every
POST /score, concurrently when GUNICORN_CMD_ARGS="--threads N" is set, and the
rows of concurrent calls are scored together by the worker's batcher.
"""

import logging
import os
import signal
import sys
import uuid

# azmlinfsrv loads this file by path and does not put its folder on sys.path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # keep TensorFlow's warnings, drop its info chatter

import flask
from azureml_inference_server_http.api.aml_request import rawhttp

from tfscoring import __version__, log
from tfscoring.batching import cost
from tfscoring.batching.batcher import Batcher
from tfscoring.batching.budget import InflightBudget
from tfscoring.config import Settings
from tfscoring.errors import DeviceFailed, PayloadTooLarge, ScoringError, ServiceUnavailable, StartupError
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


settings: Settings
model: GraphModel
interface: Interface
batcher: Batcher
budget: InflightBudget
state: workerstate.WorkerState
collection: DataCollection | None = None


def init():
    global settings, model, interface, batcher, budget, state, collection
    try:
        settings = Settings.from_env()
        metrics.setup(settings.prometheus_multiproc_dir)  # first: before anything imports prometheus_client
        state = workerstate.WorkerState(settings.worker_state_dir, settings.session_hang_s)
        state.start()  # "loading" for the startup probe, from now on
        model = GraphModel.load(settings)
        model.warm_up()
    except StartupError as err:
        _stop_startup(err)
    budget = InflightBudget(settings.inflight_budget)
    interface = Interface(*settings.served_name, model.inputs, model.outputs, model.signature_key, settings.data_answer)
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
    log.info(
        "API key %s; metrics %s; request log: %s; in-flight budget %d MiB; traces: %s; data collection: %s",
        "required (SCORING_API_KEY)" if settings.api_key else "not required",
        metrics.start_worker(settings.metrics_bind, settings.metrics_port, model.device, settings.cuda_visible_devices),
        settings.log_requests,
        budget.capacity >> 20,
        tracing.configure(settings.otlp_traces, settings.otel_service_name or interface.model_name),
        f"a share of {settings.data_collection_sample:g}, where Azure ML's collector is set up"
        if collection
        else "off",
    )
    model.on_failure = _replace_worker
    state.serving(
        lambda: workerstate.load(batcher.queued_rows, settings.queue_rows, budget.used, budget.capacity),
        model.call_age,
    )


@rawhttp
def run(request):
    if request.method == "OPTIONS":
        return responses.options()
    with requestlog.observed(request) as record:  # one log line and the metrics, also for errors
        path = request.headers.get(routes.PATH_HEADER)  # an Open Inference Protocol path, through the front door
        if path:
            response = _route(path, request, record)
        else:
            reads = request.method in ("GET", "HEAD")  # HEAD: GET's headers, the server drops the body
            response = protocols.metadata(interface) if reads else _score(request, record)
        record.status = response.status_code
        return responses.exposed(response)  # CORS: a page may read x-request-id and Retry-After


def _route(path: str, request, record: requestlog.RequestRecord):
    try:
        route = routes.resolve(path, request.method, interface)  # 404 for another model, 405
    except ScoringError as err:
        record.error = err.message
        discard_unread(request)
        return responses.error(err)
    if route.action == "infer":
        return _score(request, record, oip=True)
    if route.action == "metadata":
        return protocols.metadata(interface)
    if route.action == "ready":
        return routes.ready(interface)
    if route.action == "config":
        return routes.config(interface, model.max_batch_rows)
    return routes.server_metadata(__version__)


def _score(request, record: requestlog.RequestRecord, oip: bool = False):
    try:
        require_key(request.headers.get("Authorization"), settings.api_key)  # 401, before the body is read
        size = check_declared(request, settings.max_request_bytes)  # 405, 413 from the headers alone
        header_length = request.headers.get(protocols.HEADER_LENGTH)  # binary tensors: Open Inference Protocol
        form = "json" if oip or header_length is not None else _body_form(request.mimetype)
        # A first weight from the declared size; each step below resizes it to its own bound before it runs.
        weight = size * {"json": JSON_WEIGHT if interface.bounded_json else FREE_JSON_WEIGHT}.get(form, BINARY_WEIGHT)
        with budget.reserve(weight) as reservation:  # 503 when the worker's memory for requests in flight is taken
            record.reserved_bytes = reservation.weight
            with batcher.incoming():  # a batch being formed may wait for this request's rows
                body = read_body(request, settings.max_request_bytes)  # 400 when cut short, 413
                decoded = _decode(body, request.mimetype, form, header_length, oip, reservation, record)
                del body
            _hold(reservation, record, cost.decoded_bytes(decoded.rows, interface))  # arrays, batch, outputs
            record.rows = len(decoded.rows[0])
            outputs = batcher.predict(decoded.rows, record)  # batch with concurrent requests, infer: 503 if overloaded
            _hold(reservation, record, cost.scored_bytes(decoded.rows, outputs), refuse=False)  # outputs of free shape
            if collection:  # a sample to Azure ML's data collector, off the request path
                _collect(decoded.rows, outputs)
            return protocols.answer(decoded, outputs, interface)  # encode
    except ScoringError as err:
        record.error = err.message
        if isinstance(err, ServiceUnavailable) and not isinstance(err, DeviceFailed):
            state.refused()  # overload: readiness may drop
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


def _body_form(mimetype: str) -> str:
    """How a body of this content type is decoded: "image", "binary" (raw, .npy) or "json" (anything else)."""
    if mimetype in images.CONTENT_TYPES:
        return "image"
    return "binary" if mimetype in DECODERS else "json"


def _decode(
    body: bytes, mimetype: str, form: str, header_length: str | None, oip: bool, reservation, record
) -> protocols.Request:
    """Parse and validate (400, 413), each decoder's cost bounded from the body's bytes and reserved (503) before
    the expensive step."""
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


def _hold(reservation, record: requestlog.RequestRecord, weight: int, refuse: bool = True) -> None:
    """Resize the request's reservation to `weight` (503 where it does not fit, unless not `refuse`)."""
    reservation.resize(weight, refuse)
    record.reserved_bytes = max(record.reserved_bytes or 0, weight)


def _collect(inputs, outputs) -> None:
    """Offer a scored request to the data collection: whatever happens there, the request is answered."""
    try:
        collection.offer(_request_id(), inputs, outputs)
    except Exception:
        log.exception("data collection: a request could not be offered")


def _request_id() -> str:
    # azmlinfsrv sets g.request_id from x-request-id (or a new uuid) and echoes it in the response headers.
    return getattr(flask.g, "request_id", "") or str(uuid.uuid4())


def _replace_worker(reason: str) -> None:
    """The device failed for good: report it (readiness drops) and stop this worker gracefully.

    SIGTERM is gunicorn's own graceful stop: the worker takes no new connection, the requests it holds
    are answered (503, the model refuses to run), and the master forks a replacement with a fresh session.
    """
    state.failed(reason)
    os.kill(os.getpid(), signal.SIGTERM)


def _stop_startup(err: StartupError) -> None:
    """Exit the worker with gunicorn's boot-error code after one log line that names the problem.

    Exit code 3 makes the gunicorn master stop instead of restarting the worker
    in a loop.  Exiting here, rather than raising, keeps the server's traceback
    of this script out of the log: the line below says everything.
    """
    log.critical("start-up failed: %s", err)
    for handler in logging.getLogger("azmlinfsrv").handlers:
        handler.flush()
    os._exit(3)
