"""The metrics port cannot be flooded: one thread, bounded and timed-out connections, and a bind address setting."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import socket

import pytest
import requests

from tests.support import SCORE_PY, ServerProcess, data_body, free_port, post, wait_for

SILENT = 300


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SILENT + 256  # the held connections and everything else pytest has open
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _metrics_server(model_dir, log_dir, **env) -> ServerProcess:
    """One sync worker (so it is the one serving the metrics) on a free metrics port; .metrics_port and
    .metrics_pid set once that worker says it serves them."""
    port = free_port()
    process = ServerProcess(SCORE_PY, model_dir, log_dir, {"WORKER_COUNT": "1", "METRICS_PORT": str(port), **env})
    process.metrics_port = port
    try:
        process.wait_healthy()
        serving = lambda: re.search(r"worker (\d+) serves the metrics of every worker", process.log())  # noqa: E731
        process.metrics_pid = int(wait_for(serving, 60, "a worker to serve the metrics")[1])
    except BaseException:
        process.stop()
        raise
    return process


@pytest.fixture(scope="module")
def metrics_server(model_dir, tmp_path_factory):
    process = _metrics_server(model_dir, tmp_path_factory.mktemp("metrics-port"))
    yield process
    process.stop()


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _scrape(host: str, port: int) -> requests.Response:
    return requests.get(f"http://{host}:{port}/metrics", timeout=30)


def _local_non_loopback_ip() -> str | None:
    """An IPv4 address of this machine other than loopback: the source address of a route out (UDP connect sends
    nothing), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only the routing table is consulted
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_silent_connections_add_no_threads_and_scrapes_and_scoring_go_on(metrics_server, t10k):
    pid, port = metrics_server.metrics_pid, metrics_server.metrics_port
    assert post(metrics_server.score_url, data_body(t10k[0][:2])).status_code == 200
    assert _scrape("127.0.0.1", port).status_code == 200  # threads a first score or scrape starts exist by now
    before = _threads(pid)

    with contextlib.ExitStack() as held:
        for _ in range(SILENT):
            held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
        scraped = _scrape("127.0.0.1", port)  # accepted after the silent ones: they have all been seen by now
        scored = post(metrics_server.score_url, data_body(t10k[0][:2]))
        during = _threads(pid)

    assert scraped.status_code == 200
    assert scraped.headers["Content-Type"].startswith("text/plain; version=")
    assert "tfscoring_requests_total" in scraped.text
    assert scored.status_code == 200
    assert during <= before + 2, (before, during)


def test_the_server_closes_a_silent_connection(metrics_server):
    with socket.create_connection(("127.0.0.1", metrics_server.metrics_port), timeout=30) as silent:
        assert silent.recv(1) == b""  # closed by the server; a socket.timeout here means it never was


def test_a_too_long_request_head_is_refused(metrics_server):
    response = requests.get(
        f"http://127.0.0.1:{metrics_server.metrics_port}/metrics", headers={"X-Padding": "x" * 10_000}, timeout=30
    )
    assert response.status_code == 431


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/", 404), ("POST", "/metrics", 405)])
def test_only_get_and_head_of_metrics_are_answered(metrics_server, method, path, status):
    url = f"http://127.0.0.1:{metrics_server.metrics_port}{path}"
    response = requests.request(method, url, timeout=30)
    assert response.status_code == status
    assert response.headers["Connection"] == "close"


def test_head_of_metrics_has_the_headers_only(metrics_server):
    head = requests.head(f"http://127.0.0.1:{metrics_server.metrics_port}/metrics", timeout=30)
    assert (head.status_code, head.content) == (200, b"")
    assert int(head.headers["Content-Length"]) > 0


def test_by_default_the_metrics_port_listens_on_every_interface(metrics_server):
    address = _local_non_loopback_ip()
    if address is None:
        pytest.skip("this machine has no IPv4 address besides loopback")
    assert _scrape(address, metrics_server.metrics_port).status_code == 200


def test_metrics_bind_keeps_the_port_local(model_dir, tmp_path):
    process = _metrics_server(model_dir, tmp_path, METRICS_BIND="127.0.0.1")
    try:
        assert f"on 127.0.0.1:{process.metrics_port}" in process.log()
        assert _scrape("127.0.0.1", process.metrics_port).status_code == 200
        address = _local_non_loopback_ip()
        if address is None:
            pytest.skip("this machine has no IPv4 address besides loopback")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, process.metrics_port), timeout=30).close()
    finally:
        process.stop()


def test_a_metrics_bind_that_is_not_an_ip_address_stops_start_up(model_dir, tmp_path):
    server = ServerProcess(SCORE_PY, model_dir, tmp_path, {"METRICS_BIND": "metrics.example"})
    exit_code = server.wait_exit(timeout=120)
    log = server.log()
    assert exit_code == 3, log[-3000:]
    failures = [line for line in log.splitlines() if "start-up failed:" in line]
    assert len(failures) == 1, log[-3000:]
    assert "invalid configuration: METRICS_BIND='metrics.example': " in failures[0]
    assert "must be an IP address" in failures[0]
    assert "Traceback" not in log
