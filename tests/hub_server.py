"""A local stand-in for the Hugging Face Hub, for tests that run the real ``hf_hub_download`` and ``HfApi`` uploads.

Downloads. ``hf_hub_download`` (huggingface_hub >= 1.0) talks to one URL,
``{endpoint}/{repo_id}/resolve/{revision}/{filename}`` (the revision and filename percent-quoted):

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

Uploads. The API endpoints ``HfApi.create_repo``, ``create_branch``, ``upload_folder`` / ``create_commit`` and
``repo_info`` use (model repositories; JSON bodies, errors as above):

- ``POST /api/repos/create`` (``name``, ``organization``, ``visibility``): a repository whose ``main`` holds an initial
  commit with ``.gitattributes``, as on the Hub; ``409`` with the ``url`` when it exists (``exist_ok`` accepts that).
- ``POST /api/models/{repo_id}/branch/{branch}`` (optional ``startingPoint``, default ``main``): a new branch at that
  commit; ``409`` when it exists.
- ``POST /api/models/{repo_id}/preupload/{revision}``: every file is to be sent inline (``uploadMode: regular``, so no
  LFS or Xet storage is involved), with the ``oid`` (git blob sha1) of the file already at that path, which the client
  uses to skip unchanged files. An unknown revision is ``RevisionNotFound``, as on the Hub: a branch must exist
  before anything is uploaded to it.
- ``POST /api/models/{repo_id}/commit/{branch}``: the NDJSON commit (``header``, ``file`` with base64 content,
  ``deletedFile``, ``deletedFolder``) applied on top of the branch; answers ``commitOid`` and ``commitUrl``.
  ``lfsFile`` lines are refused (``400``): nothing here asks for LFS.
- ``GET /api/models/{repo_id}/revision/{revision}``: ``id``, ``sha`` and ``siblings`` (what the client reads when a
  commit would change nothing).
- ``POST /api/validate-yaml``: no errors (the client validates ``README.md`` metadata before a single commit).

No authentication is checked. Note that huggingface_hub >= 2 GETs ``{endpoint}/api/agent-harnesses`` once per process
(even with ``local_files_only=True``, unless a copy younger than a day sits in ``HF_HOME``); the plain ``404`` it gets
here makes it give up without writing anything, but the request shows up in :attr:`FakeHub.requests`.

huggingface_hub reads ``HF_ENDPOINT`` once, at import, into ``huggingface_hub.constants``; setting the environment
variable later has no effect in the same process. In a test, call :meth:`FakeHub.patch_client` with pytest's
``monkeypatch`` (it patches ``constants.ENDPOINT`` and ``constants.HUGGINGFACE_CO_URL_TEMPLATE``, and sets the
environment for subprocesses), or start a subprocess with ``env={**os.environ, **hub.env()}``.
"""

from __future__ import annotations

import base64
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
    messages: dict[str, str] = field(default_factory=dict)
    private: bool = False

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


class _ApiError(Exception):
    """Any other API error: a status and a JSON body."""

    def __init__(self, status: int, body: dict[str, object]) -> None:
        super().__init__(str(body))
        self.status, self.body = status, body


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob with this content (what the Hub sends as the ETag of a non-LFS file)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class FakeHub:
    """An in-memory Hub serving file downloads and the upload API on 127.0.0.1 while in a ``with`` block."""

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

    def add_commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main", message: str = "") -> str:
        """Commit exactly ``files`` (the whole tree) on top of ``branch``, move the branch to it; return its sha."""
        with self._lock:
            return self._commit(self._repos.setdefault(repo_id, _Repo()), repo_id, files, branch, message)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The tree of a branch, tag or commit (a copy)."""
        with self._lock:
            repo = self._repos[repo_id]
            sha = repo.resolve(revision)
            if sha is None:
                raise KeyError(f"{repo_id} has no revision {revision}")
            return dict(repo.commits[sha])

    def branches(self, repo_id: str) -> dict[str, str]:
        """Branch names and the commits they point at (a copy)."""
        with self._lock:
            return dict(self._repos[repo_id].branches)

    def message(self, repo_id: str, sha: str) -> str:
        """The summary a commit was made with."""
        with self._lock:
            return self._repos[repo_id].messages[sha]

    def is_private(self, repo_id: str) -> bool:
        """Whether the repository was created private."""
        with self._lock:
            return self._repos[repo_id].private

    @staticmethod
    def _commit(repo: _Repo, repo_id: str, files: dict[str, bytes], branch: str, message: str) -> str:
        digest = hashlib.sha1(f"{repo_id}\0{repo.branches.get(branch, '')}\0{message}\0".encode())
        for name in sorted(files):
            digest.update(b"%s\0%d\0%s" % (name.encode(), len(files[name]), files[name]))
        sha = digest.hexdigest()
        repo.commits[sha] = dict(files)
        repo.branches[branch] = sha
        repo.messages[sha] = message
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

    def _repo(self, repo_id: str) -> _Repo:
        repo = self._repos.get(repo_id)
        if repo is None:
            raise _NotFound("RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def _head(self, repo: _Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise _NotFound("RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    def _api(self, method: str, route: str, body: bytes) -> dict[str, object]:
        """Answer an ``/api/...`` request (route without the prefix); raises `_NotFound` or `_ApiError`."""
        with self._lock:
            if method == "POST" and route == "repos/create":
                data = json.loads(body)
                repo_id = "/".join(p for p in (data.get("organization"), data["name"]) if p)
                url = f"{self.endpoint}/{repo_id}"
                if repo_id in self._repos:
                    raise _ApiError(409, {"error": "You already created this model repo", "url": url})
                repo = self._repos[repo_id] = _Repo(private=data.get("visibility") == "private")
                self._commit(repo, repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                             "main", "initial commit")
                return {"url": url}
            if method == "POST" and route == "validate-yaml":
                return {"errors": [], "warnings": []}
            match = re.fullmatch(r"models/(.+)/(branch|preupload|commit|revision)/([^/]+)", route)
            if match is None:
                raise _ApiError(404, {"error": f"no route {method} /api/{route}"})
            repo_id, action, revision = match[1], match[2], unquote(match[3])
            repo = self._repo(repo_id)
            if method == "POST" and action == "branch":
                if revision in repo.branches:
                    raise _ApiError(409, {"error": f"Reference already exists: refs/heads/{revision}"})
                repo.branches[revision] = self._head(repo, json.loads(body or b"{}").get("startingPoint") or "main")
                return {}
            if method == "POST" and action == "preupload":
                files = repo.commits[self._head(repo, revision)]
                return {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                     "oid": git_blob_sha1(files[f["path"]]) if f["path"] in files else None}
                    for f in json.loads(body)["files"]]}
            if method == "POST" and action == "commit":
                if revision not in repo.branches:
                    raise _NotFound("RevisionNotFound", f"Invalid rev id: {revision}")
                files = dict(repo.commits[repo.branches[revision]])
                summary = ""
                for line in body.splitlines():
                    item = json.loads(line)
                    key, value = item["key"], item["value"]
                    if key == "header":
                        summary = value["summary"]
                    elif key == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif key == "deletedFile":
                        files.pop(value["path"], None)
                    elif key == "deletedFolder":
                        prefix = value["path"].rstrip("/") + "/"
                        files = {k: v for k, v in files.items() if not k.startswith(prefix)}
                    else:
                        raise _ApiError(400, {"error": f"this test hub does not accept {key!r} commit lines"})
                sha = self._commit(repo, repo_id, files, revision, summary)
                return {"commitOid": sha, "commitUrl": f"{self.endpoint}/{repo_id}/commit/{sha}",
                        "pullRequestUrl": None}
            if method == "GET" and action == "revision":
                sha = self._head(repo, revision)
                return {"id": repo_id, "sha": sha, "private": repo.private,
                        "siblings": [{"rfilename": name} for name in sorted(repo.commits[sha])]}
            raise _ApiError(405, {"error": f"{method} not allowed on /api/{route}"})


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that knows the :class:`FakeHub` it serves."""

    daemon_threads = True
    hub: FakeHub


class _Handler(BaseHTTPRequestHandler):
    """Answers ``HEAD`` and ``GET`` on ``/{repo_id}/resolve/{revision}/{filename}`` and the ``/api/`` routes."""

    server: _Server

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        if urlsplit(self.path).path.startswith("/api/"):
            self._serve_api()
        else:
            self._serve(send_body=True)

    def do_POST(self) -> None:
        self._serve_api()

    def _serve_api(self) -> None:
        hub = self.server.hub
        hub._record(self.command, self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route = urlsplit(self.path).path.removeprefix("/api/")
        try:
            answer = hub._api(self.command, route, body)
        except _NotFound as err:
            headers = {"X-Error-Code": err.code, "X-Error-Message": str(err), "Content-Type": "application/json"}
            self._send(404, headers, json.dumps({"error": str(err)}).encode(), True)
            return
        except _ApiError as err:
            self._send(err.status, {"Content-Type": "application/json"}, json.dumps(err.body).encode(), True)
            return
        self._send(200, {"Content-Type": "application/json"}, json.dumps(answer).encode(), True)

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
