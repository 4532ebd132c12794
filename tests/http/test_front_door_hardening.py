"""The front door's hardening: every refusal is JSON with an X-Request-Id whoever makes it (nginx, gunicorn,
Flask), no client header lands unbounded in a log line, CORS lets a page read the request id and Retry-After,
servers on one host share nothing, a killed tree's run folder is removed at the next start, and a request whose
worker died before answering is retried once on another worker.

The device is tests/faulty_device_score.py (the real score.py whose session calls wait while a stall file
exists), so that requests can be held in flight while a worker is killed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support import (
    REPO,
    FrontDoorProcess,
    data_body,
    free_port,
    open_connections,
    post,
    wait_for,
    worker_pids,
)

FAULTY_SCORE_PY = REPO / "tests" / "faulty_device_score.py"
ALLOWED = "https://app.example.com"
ONE_ROW = data_body([[0.0] * 784])
REPLACED_S = 120
IN_FLIGHT = 16


@pytest.fixture
def temp_dir():
    """A temp dir (TMPDIR) for the run folders of a test's servers, apart from any other server's.  Under the
    system's temp dir, not pytest's: nginx's workers (nobody, when the tests run as root) must reach the sockets."""
    path = Path(tempfile.mkdtemp(prefix="hardening-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hardened_env(tmp: Path, **env: str) -> dict[str, str]:
    return {
        "WORKER_COUNT": "2",
        "GUNICORN_CMD_ARGS": "--threads 4",
        "AML_CORS_ORIGINS": f"{ALLOWED}, https://other.example.com",
        "STALL_FILE": str(tmp / "stall"),
        "BREAK_FILE": str(tmp / "break"),
        "FLAKY_FILE": str(tmp / "flaky"),
        "SESSION_HANG_S": "600",
        "MAX_QUEUE_WAIT_MS": "120000",
        # Spans on, to a port nobody listens on: OpenTelemetry's propagator reads every traceparent and tracestate.
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "HOME": str(tmp / "home"),  # gunicorn's control socket would go to $HOME/.gunicorn
        **env,
    }


def start(model_dir: Path, tmp: Path, **env: str) -> FrontDoorProcess:
    (tmp / "home").mkdir(exist_ok=True)
    return FrontDoorProcess(model_dir, tmp, hardened_env(tmp, **env), entry_script=FAULTY_SCORE_PY)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hardened")
    with start(model_dir, tmp) as running:
        running.tmp = tmp
        yield running


def exchange(port: int, request: bytes, timeout: float = 60) -> tuple[bytes, dict[str, str], bytes]:
    """Send raw bytes and read one answer (to its Content-Length, or until the server closes): (status line,
    headers with lower-case names, body).  The connection is not half-closed: nginx would drop the request."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        while chunk := connection.recv(65536):
            answer += chunk
            head, separator, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if separator and length and len(body) >= int(length[1]):
                break
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


ODD_REQUESTS = {
    "control-char-in-value": request("GET /score HTTP/1.1\nHost: a\nX-Foo: a\x01b\n"),
    "control-char-in-user-agent": request("POST /score HTTP/1.1\nHost: a\nUser-Agent: a\x7fb\nContent-Length: 0\n"),
    "nul-in-value": request("GET /score HTTP/1.1\nHost: a\nX-Foo: a\x00b\n"),
    "trace": request("TRACE /score HTTP/1.1\nHost: a\n"),
    "track": request("TRACK /score HTTP/1.1\nHost: a\n"),
    "put": request("PUT /score HTTP/1.1\nHost: a\nContent-Length: 2\n", b"{}"),
    "delete": request("DELETE /score HTTP/1.1\nHost: a\n"),
    "propfind": request("PROPFIND / HTTP/1.1\nHost: a\n"),
    "connect": request("CONNECT a:443 HTTP/1.1\nHost: a\n"),
    "lower-case-method": request("get /score HTTP/1.1\nHost: a\n"),
    "absolute-uri": request("POST http://elsewhere.example/score HTTP/1.1\nHost: a\nContent-Length: 2\n", b"{}"),
    "duplicate-host": request("GET /score HTTP/1.1\nHost: a\nHost: b\n"),
    "no-host": request("GET /score HTTP/1.1\n"),
    "bad-host": request("GET /score HTTP/1.1\nHost: a/b\n"),
    "huge-headers": request("GET /score HTTP/1.1\nHost: a\n" + "".join(f"X-H{i}: {'v' * 15000}\n" for i in range(6))),
    "obsolete-folding": request("GET /score HTTP/1.1\nHost: a\nX-A: b\n c\n"),
    "bad-expect": request("POST /score HTTP/1.1\nHost: a\nExpect: 100-sideways\nContent-Length: 2\n", b"{}"),
    "bad-chunk-size": request("POST /score HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n", b"zz\r\nabc\r\n0\r\n\r\n"),
    "length-and-chunked": request(
        "POST /score HTTP/1.1\nHost: a\nContent-Length: 5\nTransfer-Encoding: chunked\n", b"0\r\n\r\n"
    ),
    "two-lengths": request("POST /score HTTP/1.1\nHost: a\nContent-Length: 2\nContent-Length: 3\n", b"{}"),
    "chunked-gzip": request("POST /score HTTP/1.1\nHost: a\nTransfer-Encoding: chunked, gzip\n"),
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "http-9.9": request("GET /score HTTP/9.9\nHost: a\n"),
    "over-long-request-id": request(f"POST /score HTTP/1.1\nHost: a\nX-Request-Id: {'i' * 200}\nContent-Length: 0\n"),
}


@pytest.mark.parametrize("raw", ODD_REQUESTS.values(), ids=ODD_REQUESTS.keys())
def test_every_refusal_is_json_with_a_request_id(server, raw):
    status_line, headers, body = exchange(server.port, raw)
    status = int(status_line.split()[1])
    assert status >= 400, status_line
    assert headers.get("content-type", "").startswith("application/json"), (status_line, headers, body[:200])
    assert json.loads(body)["error"], body
    assert re.fullmatch(r"[A-Za-z0-9._:+=@/-]{1,100}", headers.get("x-request-id", "")), headers


def test_methods_the_server_has_no_use_for_are_refused_by_the_front_door_with_allow(server):
    status_line, headers, body = exchange(server.port, request("PATCH /score HTTP/1.1\nHost: a\n"))
    assert status_line.split()[1] == b"405"
    assert set(headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert "method not allowed" in json.loads(body)["error"]


def test_http_09_gets_a_json_body(server):
    """HTTP/0.9 has no status line and no headers: the answer is the JSON body alone, never a worker's."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(b"GET /score\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert "HTTP version not supported" in json.loads(answer)["error"]


def test_gunicorns_own_refusal_carries_the_request_id(server):
    """The worker's parser refuses the header; the answer still carries the id nginx sent and logs."""
    status_line, headers, body = exchange(
        server.port, request("GET /score HTTP/1.1\nHost: a\nX-Request-Id: id-for-a-bad-header\nX-Foo: a\x01b\n")
    )
    assert status_line.split()[1] == b"400"
    assert headers["x-request-id"] == "id-for-a-bad-header"
    assert "X-FOO" in json.loads(body)["error"]


@pytest.mark.parametrize("given", ["x" * 101, "two words", "a\tb", "<script>"])
def test_an_odd_or_over_long_request_id_is_replaced_by_the_front_doors(server, t10k, given):
    answer = post(server.score_url, data_body(t10k[0][:1]), headers={"X-Request-Id": given})
    assert answer.status_code == 200, answer.text
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])


def test_a_well_formed_request_id_is_kept(server, t10k):
    given = f"client-{uuid.uuid4()}"
    answer = post(server.score_url, data_body(t10k[0][:1]), headers={"X-Request-Id": given})
    assert answer.headers["x-request-id"] == given


def test_no_client_header_lands_unbounded_in_a_log_line(server):
    """Each line that could quote a header is waited for, then shown to be cut."""
    marker = uuid.uuid4().hex[:8]
    long_tracestate = "k=" + "T" * 5000  # over the W3C 512: not passed on at all
    bad_tracestate = f"bad member {marker} " + "S" * 480  # under 512, but malformed: OpenTelemetry logs it
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    def noisy(n: int, **extra: str) -> dict[str, str]:
        return {
            "X-Request-Id": f"logged-{marker}-{n}",
            "User-Agent": f"ua-{marker}-{n}-" + "U" * 5000,
            "Content-Type": "application/" + "C" * 5000,
            "traceparent": traceparent,
            **extra,
        }

    post(server.score_url, b"{}", headers=noisy(1, tracestate=long_tracestate), content_type=None)
    post(server.score_url, b"{}", headers=noisy(2, tracestate=bad_tracestate), content_type=None)
    refused = post(server.score_url, b"{}", headers=noisy(3, **{"X-Ms-Client-Request-Id": "M" * 5000}))
    assert refused.status_code == 431  # azmlinfsrv's own limit: the script never sees it, gunicorn logs it
    requests.get(f"{server.url}/swagger.json?{marker}" + "Q" * 5000, headers={"User-Agent": "A" * 5000}, timeout=30)
    exchange(server.port, request(f"GET /score HTTP/1.1\nHost: a\nX-{marker}{'N' * 5000}: a\x01b\n"))

    server.wait_for_log(f'"request_id":"logged-{marker}-1"')  # the request log's lines
    server.wait_for_log(f'"request_id":"logged-{marker}-2"')
    server.wait_for_log(f"Member doesn't match the w3c identifiers format bad member {marker}")
    server.wait_for_log(f"ua-{marker}-3-")  # gunicorn's access line for the 431
    server.wait_for_log(f"GET /swagger.json?{marker}", count=2)  # azmlinfsrv's line and gunicorn's access line
    server.wait_for_log(f"Invalid request from ip=: Invalid HTTP Header: 'X-{marker.upper()}")
    log = server.log()
    for filler in ("T", "S", "U", "C", "M", "Q", "A", "N"):
        assert filler * 400 not in log, f"a header of {filler}s is in the log"
    assert max(len(line) for line in log.splitlines() if marker in line or marker.upper() in line) < 2000


def test_cors_lets_a_page_read_the_request_id_and_retry_after(server, t10k):
    answer = post(server.score_url, data_body(t10k[0][:1]), headers={"Origin": ALLOWED})
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    exposed = {name.strip() for name in answer.headers["Access-Control-Expose-Headers"].lower().split(",")}
    assert {"x-request-id", "retry-after"} <= exposed
    refused = post(server.score_url, b"{}", headers={"Origin": ALLOWED})
    assert refused.status_code == 400 and "x-request-id" in refused.headers["Access-Control-Expose-Headers"]


def test_cors_on_the_front_doors_own_errors(server):
    answer = requests.request("TRACE", server.score_url, headers={"Origin": ALLOWED}, timeout=10)
    assert answer.status_code == 405
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "retry-after" in answer.headers["Access-Control-Expose-Headers"]
    assert "Origin" in answer.headers["Vary"]
    other = requests.request("TRACE", server.score_url, headers={"Origin": "https://evil.example"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_on_the_answers_flask_cors_never_saw(server):
    """gunicorn's own 400 (a header value it refuses) and Flask's own 405 (POST /swagger.json) pass through
    nothing of flask_cors: the front door adds the allowed origin and the list, once."""
    for raw in (
        request(f"GET /score HTTP/1.1\nHost: a\nOrigin: {ALLOWED}\nX-Foo: a\x01b\n"),
        request(f"POST /swagger.json HTTP/1.1\nHost: a\nOrigin: {ALLOWED}\nContent-Length: 0\n"),
    ):
        status_line, headers, _ = exchange(server.port, raw)
        assert status_line.split()[1] in (b"400", b"405"), status_line
        assert headers.get("access-control-allow-origin") == ALLOWED, (status_line, headers)
        assert "x-request-id" in headers["access-control-expose-headers"]
        assert "Origin" in headers["vary"]
    _, headers, _ = exchange(
        server.port, request("GET /score HTTP/1.1\nHost: a\nOrigin: https://evil.example\nX-Foo: a\x01b\n")
    )
    assert "access-control-allow-origin" not in headers and "access-control-expose-headers" not in headers
    answer = requests.get(f"{server.url}/swagger.json", headers={"Origin": ALLOWED}, timeout=30)  # flask_cors's
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == ALLOWED  # once
    assert answer.headers["Vary"] == "Origin"


@pytest.mark.parametrize("path", ["/nothere", "/score/", "/scores", "/swagger.json/x", "/v3", "/.frontdoor/404.json"])
def test_a_path_the_server_does_not_have_is_a_json_404(server, path):
    answer = requests.get(server.url + path, headers={"Origin": ALLOWED}, timeout=30)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/json" and answer.json() == {"error": "not found"}
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED and answer.headers["X-Request-Id"]


def test_the_paths_the_server_has_are_passed_on(server):
    assert requests.get(f"{server.url}/", timeout=30).text == "Healthy"  # azmlinfsrv's liveness, for Azure ML
    assert requests.get(f"{server.url}/?probe=1", timeout=30).text == "Healthy"
    assert requests.get(f"{server.url}/swagger.json?version=3", timeout=30).status_code == 200
    assert requests.get(f"{server.url}/health/live", timeout=30).status_code == 200
    assert requests.get(f"{server.url}/v2/health/live", timeout=30).status_code == 200
    assert requests.get(f"{server.url}/v2", timeout=30).status_code == 200
    assert post(f"{server.url}/score?x=1", ONE_ROW).status_code == 200


def test_the_front_doors_error_pages_share_their_headers(tmp_path, monkeypatch):
    """The 502, 503 and 504 pages as the 405 above: the headers are set once, on the block of the pages, and no
    page sets one of its own (nginx's add_header in a location replaces all the enclosing ones)."""
    from tfscoring.config import ServerSettings
    from tfscoring.process import frontdoor

    monkeypatch.setenv("AML_CORS_ORIGINS", ALLOWED)
    text = frontdoor.write_config(ServerSettings.from_env(), 8080, tmp_path).read_text()
    block = re.search(r"\n        location \^~ /\.frontdoor/ \{\n(.*?)\n        \}\n", text, re.S)[1]
    pages = re.findall(r"location = /\.frontdoor/(\d+)\.json \{(.*?)\}", block, re.S)
    assert {code for code, _ in pages} >= {"400", "404", "405", "413", "431", "502", "503", "504", "505"}
    assert not [code for code, page in pages if "add_header" in page]
    for header in ("X-Request-Id", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Vary", "Allow"):
        assert f"\n            add_header {header} " in block, header
    assert re.search(r"map \$status \$error_retry_after \{\s+502 1;\s+503 1;\s+504 1;", text)
    assert f'"{ALLOWED}" $http_origin;' in text


def run_folder(server: FrontDoorProcess) -> Path:
    line = server.wait_for_log("front door on :")
    return Path(re.search(r"on (\S+)/gunicorn\.sock", line)[1])


def test_two_servers_started_at_once_share_nothing(model_dir, tmp_path, temp_dir):
    """Two servers of one user, started together: both serve, each in its own folders, neither at ~/.gunicorn."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    # gunicorn's control socket would be $XDG_RUNTIME_DIR/gunicorn.ctl, or ~/.gunicorn/gunicorn.ctl without it
    shared = {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "xdg"), "TMPDIR": str(temp_dir)}
    (tmp_path / "home").mkdir()
    (tmp_path / "xdg").mkdir()
    servers = [start(model_dir, tmp_path / name, **shared) for name in ("a", "b")]
    try:
        for running in servers:
            running.wait_healthy()
        for running in servers:
            assert post(running.score_url, ONE_ROW).status_code == 200
        folders = [run_folder(running) for running in servers]
        assert folders[0] != folders[1]
        assert not (tmp_path / "home" / ".gunicorn").exists()
        assert not list((tmp_path / "xdg").iterdir())
    finally:
        for running in servers:
            running.stop()


def test_a_killed_trees_run_folder_is_removed_at_the_next_start_and_a_running_ones_kept(model_dir, tmp_path, temp_dir):
    shared = {"TMPDIR": str(temp_dir)}
    (tmp_path / "killed").mkdir()
    (tmp_path / "running").mkdir()
    (tmp_path / "next").mkdir()
    with start(model_dir, tmp_path / "running", **shared) as running:
        killed = start(model_dir, tmp_path / "killed", **shared).wait_healthy()
        try:
            killed_folder, running_folder = run_folder(killed), run_folder(running)
            children = [killed.gunicorn_pid(), killed.nginx_pid()]
            os.killpg(killed.process.pid, signal.SIGKILL)  # serve.py: no clean-up of its own
            killed.process.wait(30)
            wait_for(lambda: not any(_alive(pid) for pid in children), 60, "the killed server's children gone")
        finally:
            killed.stop()
        assert killed_folder.exists()  # left behind
        with start(model_dir, tmp_path / "next", **shared) as following:
            assert not killed_folder.exists()
            assert running_folder.exists()
            assert post(running.score_url, ONE_ROW).status_code == 200
            assert post(following.score_url, ONE_ROW).status_code == 200


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_requests_whose_worker_dies_before_answering_are_retried_on_another(server):
    """16 requests held in the two workers' stalled session calls; one worker is killed: its requests go to the
    other worker (or its replacement), and every request is answered 200."""
    stall = server.tmp / "stall"
    workers = worker_pids(server.gunicorn_pid())
    assert len(workers) == 2
    stall.touch()
    try:
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            answers = [pool.submit(post, server.score_url, ONE_ROW, timeout=300) for _ in range(IN_FLIGHT)]
            wait_for(stall.with_name("stall-reached").exists, 60, "a request stalled in a session call")
            wait_for(lambda: _in_flight(server) >= IN_FLIGHT, 60, f"{IN_FLIGHT} requests in flight")
            victim = max(workers)
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: victim not in worker_pids(server.gunicorn_pid()), 60, "the killed worker gone")
            stall.unlink()
            statuses = [answer.result().status_code for answer in answers]
    finally:
        stall.unlink(missing_ok=True)
    assert statuses == [200] * IN_FLIGHT
    wait_for(lambda: len(worker_pids(server.gunicorn_pid())) == 2, REPLACED_S, "the worker replaced")


def _in_flight(server: FrontDoorProcess) -> int:
    """Client connections nginx holds on the server's port (each of the pool's requests opens its own)."""
    return open_connections(server.port)
