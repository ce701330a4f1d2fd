"""A loopback HTTP file server for download tests: files at ``/<name>``, byte ranges, and broken connections on demand.

- ``GET`` / ``HEAD`` send ``ETag`` (the SHA-1 of the content), ``Content-Length`` and ``Accept-Ranges: bytes``.
- ``Range: bytes=start-[end]`` is answered with ``206`` and ``Content-Range``; a start past the end gets ``416``.
  ``If-Range`` with another ETag gets the whole file (``200``), as HTTP specifies. ``ranges = False`` makes the
  server ignore ``Range`` (``200``, whole file), like servers without range support.
- :meth:`FileServer.cut` makes the next ``GET`` of a file announce the full length, send only the first bytes and
  close the connection (an interrupted download).
- Every request is recorded in :attr:`FileServer.requests` as ``(method, path, range header or None)``.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class FileServer:
    """Serves ``files`` (name -> bytes) on 127.0.0.1 while in a ``with`` block."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.ranges = True
        self.requests: list[tuple[str, str, str | None]] = []
        self._cuts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("FileServer is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def cut(self, name: str, after: int) -> None:
        """Break the next ``GET`` of `name` after `after` bytes of content."""
        with self._lock:
            self._cuts[name] = after

    def gets(self, name: str) -> list[str | None]:
        """The ``Range`` header of every ``GET`` of `name` so far (None when absent)."""
        return [r for method, path, r in self.requests if method == "GET" and path == f"/{name}"]

    def __enter__(self) -> FileServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.files = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="FileServer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is None or self._thread is None:  # already stopped
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def _take_cut(self, name: str) -> int | None:
        with self._lock:
            return self._cuts.pop(name, None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    files: FileServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: requests are recorded in `FileServer.requests`."""

    def _serve(self, send_body: bool) -> None:
        files = self.server.files
        path = urlsplit(self.path).path
        with files._lock:
            files.requests.append((self.command, path, self.headers.get("Range")))
        content = files.files.get(unquote(path).lstrip("/"))
        if content is None:
            self._head(404, {"Content-Length": "0"})
            return
        etag = f'"{hashlib.sha1(content).hexdigest()}"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        status, body = 200, content
        match = _RANGE.fullmatch(self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        if match and files.ranges and (if_range is None or if_range == etag):
            start = int(match[1])
            end = min(int(match[2] or len(content) - 1), len(content) - 1)
            if start >= len(content):
                self._head(416, {"Content-Range": f"bytes */{len(content)}", "Content-Length": "0"})
                return
            status, body = 206, content[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        headers["Content-Length"] = str(len(body))
        self._head(status, headers)
        if not send_body:
            return
        cut = files._take_cut(unquote(path).lstrip("/"))
        if cut is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)  # the client sees the connection end before Content-Length bytes

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
