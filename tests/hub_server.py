"""A local stand-in for the Hugging Face Hub's file endpoint, for tests that run the real ``hf_hub_download``.

``hf_hub_download`` (huggingface_hub >= 1.0) talks to one URL, ``{endpoint}/{repo_id}/resolve/{revision}/{filename}``
(the revision and filename percent-quoted), so that is the only endpoint served here:

- ``HEAD`` gives the metadata the client checks before it touches its cache: ``X-Repo-Commit`` (the commit the
  revision resolves to; the snapshot folder is named after it), ``ETag`` (the blob's name in the cache; the git blob
  sha1, as the Hub sends for files not stored in LFS) and ``Content-Length`` (checked against the bytes received).
  No redirect is sent: the client would only follow one to the same origin and then needs the same headers there.
- ``GET`` sends the same headers and the content; ``Range: bytes=start-[end]`` (sent when resuming an interrupted
  download) is answered with ``206`` and ``Content-Range`` (an unsatisfiable range is ignored: ``200``, whole file).
- Errors are ``404`` with the ``X-Error-Code`` the client maps to typed exceptions: ``RepoNotFound`` ->
  ``RepositoryNotFoundError``, ``RevisionNotFound`` -> ``RevisionNotFoundError``, ``EntryNotFound`` ->
  ``EntryNotFoundError`` (``RemoteEntryNotFoundError`` in huggingface_hub >= 1.0; it also gets ``X-Repo-Commit`` so
  the client records the missing file under ``.no_exist``). Any other path is a plain ``404``.

Model repositories only; the API (``/api/...``, used by ``snapshot_download`` and ``HfApi``) is not served. Note
that huggingface_hub >= 2 GETs ``{endpoint}/api/agent-harnesses`` once per process (even with
``local_files_only=True``, unless a copy younger than a day sits in ``HF_HOME``); the plain ``404`` it gets here makes
it give up without writing anything, but the request shows up in :attr:`FakeHub.requests`.

huggingface_hub reads ``HF_ENDPOINT`` once, at import, into ``huggingface_hub.constants``; setting the environment
variable later has no effect in the same process. In a test, call :meth:`FakeHub.patch_client` with pytest's
``monkeypatch`` (it patches ``constants.ENDPOINT`` and ``constants.HUGGINGFACE_CO_URL_TEMPLATE``, and sets the
environment for subprocesses), or start a subprocess with ``env={**os.environ, **hub.env()}``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import pytest

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class _Repo:
    """Commits (sha -> files), branches and tags (name -> sha) of one repository."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """The commit sha a branch, tag or full sha names, or None."""
        if revision in self.commits:
            return revision
        return self.branches.get(revision) or self.tags.get(revision)


class _NotFound(Exception):
    """A 404 with the Hub's ``X-Error-Code`` (and the commit, once the revision is known)."""

    def __init__(self, code: str, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.code, self.commit = code, commit


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob with this content (what the Hub sends as the ETag of a non-LFS file)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class FakeHub:
    """An in-memory Hub serving ``/{repo_id}/resolve/{revision}/{filename}`` on 127.0.0.1 while in a ``with`` block."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("FakeHub is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeHub", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def add_commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Commit exactly ``files`` (the whole tree) on top of ``branch``, move the branch to it; return its sha."""
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            digest = hashlib.sha1(f"{repo_id}\0{repo.branches.get(branch, '')}\0".encode())
            for name in sorted(files):
                digest.update(b"%s\0%d\0%s" % (name.encode(), len(files[name]), files[name]))
            sha = digest.hexdigest()
            repo.commits[sha] = dict(files)
            repo.branches[branch] = sha
            return sha

    def add_tag(self, repo_id: str, tag: str, sha: str) -> None:
        """Point ``tag`` at an existing commit of ``repo_id``."""
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None or sha not in repo.commits:
                raise ValueError(f"{repo_id} has no commit {sha}")
            repo.tags[tag] = sha

    def env(self) -> dict[str, str]:
        """Environment for a subprocess: this endpoint, online, and no token sent (nor refreshed) implicitly."""
        return {"HF_ENDPOINT": self.endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}

    def patch_client(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point the already imported huggingface_hub (and subprocesses) at this server, until the test ends."""
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "ENDPOINT", self.endpoint)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
        for name, value in self.env().items():
            monkeypatch.setenv(name, value)

    def _lookup(self, repo_id: str, revision: str, filename: str) -> tuple[str, bytes]:
        """The commit sha and content of a file, or :class:`_NotFound`."""
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                raise _NotFound("RepoNotFound", f"Repository {repo_id} not found")
            sha = repo.resolve(revision)
            if sha is None:
                raise _NotFound("RevisionNotFound", f"Invalid rev id: {revision}")
            files = repo.commits[sha]
            if filename not in files:
                raise _NotFound("EntryNotFound", f"{filename} does not exist on {revision}", commit=sha)
            return sha, files[filename]

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that knows the :class:`FakeHub` it serves."""

    daemon_threads = True
    hub: FakeHub


class _Handler(BaseHTTPRequestHandler):
    """Answers ``HEAD`` and ``GET`` on ``/{repo_id}/resolve/{revision}/{filename}``."""

    server: _Server

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean (requests are recorded in ``FakeHub.requests``)."""

    def _serve(self, send_body: bool) -> None:
        hub = self.server.hub
        hub._record(self.command, self.path)
        repo_id, sep, rest = urlsplit(self.path).path.lstrip("/").partition("/resolve/")
        revision, _, filename = rest.partition("/")
        if not (sep and revision and filename):
            self._send(404, {}, b'{"error": "Not Found"}', send_body)
            return
        try:
            sha, content = hub._lookup(unquote(repo_id), unquote(revision), unquote(filename))
        except _NotFound as err:
            headers = {"X-Error-Code": err.code, "X-Error-Message": str(err), "Content-Type": "application/json"}
            if err.commit is not None:
                headers["X-Repo-Commit"] = err.commit
            self._send(404, headers, json.dumps({"error": str(err)}).encode(), send_body)
            return
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha1(content)}"', "Accept-Ranges": "bytes"}
        match = _RANGE.fullmatch(self.headers.get("Range", ""))
        start, end = (int(match[1]), min(int(match[2] or len(content) - 1), len(content) - 1)) if match else (0, -1)
        if not start <= end:
            self._send(200, headers, content, send_body)
            return
        headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        self._send(206, headers, content[start : end + 1], send_body)

    def _send(self, status: int, headers: dict[str, str], body: bytes, send_body: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)
