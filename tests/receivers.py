"""HTTP receivers on 127.0.0.1 that stand where Azure ML's and OpenTelemetry's services stand: the server's real
exporters send to them over HTTP, and tests read what arrived."""

from __future__ import annotations

import http.server
import threading


class Receiver:
    """Takes every POST, keeps (path, headers, body), answers 200.  Use as a context manager."""

    def __init__(self):
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()


class HungReceiver:
    """Accepts connections and never answers: a collector or exporter that hangs."""

    def __init__(self):
        import socket

        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._held: list = []
        self._stopped = threading.Event()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)  # read nothing, answer nothing

    def __enter__(self) -> HungReceiver:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()
        self._listener.close()
        for connection in self._held:
            connection.close()
