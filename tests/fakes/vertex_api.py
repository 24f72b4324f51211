"""A fake of the Vertex AI REST API (pipeline jobs and schedules) and of an Artifact Registry
KFP repository, on loopback, for Google's real clients.

Point `aiplatform.init(api_endpoint="http://127.0.0.1:PORT", api_transport="rest",
credentials=AnonymousCredentials())` at `FakeVertex.endpoint`, and `kfp.registry.RegistryClient`
at `FakeVertex.registry_host`. Every request is recorded (method, path, query, JSON body), and
`fail_next` makes the next matching requests answer with an error status.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import threading
import time
import urllib.parse
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclasses.dataclass
class Request:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    if value is None:
        target.pop(leaf, None)
    else:
        target[leaf] = value


def _get_path(source: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(source, dict) or key not in source:
            return None
        source = source[key]
    return source


# Sub-messages of a Schedule compared field by field; anything else is one value (a Struct
# such as the pipeline spec, a map such as labels or parameter values, a list, a scalar).
_MESSAGES = {
    "createPipelineJobRequest",
    "createPipelineJobRequest.pipelineJob",
    "createPipelineJobRequest.pipelineJob.runtimeConfig",
    "createPipelineJobRequest.pipelineJob.encryptionSpec",
}


def _empty(value: Any) -> bool:
    return value in (None, "", 0, "0", False, [], {})


def _unset(stored: dict[str, Any], body: dict[str, Any], path: str) -> list[str]:
    """Paths under `path` that are non-empty in `stored` and empty in `body`."""
    old, new = _get_path(stored, path), _get_path(body or {}, path)
    if _empty(old):
        return []
    if _empty(new):
        return [path]
    if path in _MESSAGES and isinstance(old, dict):
        return [u for key in old for u in _unset(stored, body, f"{path}.{key}")]
    return []


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


class FakeVertex:
    """The fake server: start it, use `endpoint` / `registry_host`, read `requests`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.pipeline_jobs: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.packages: dict[str, dict[str, Any]] = {}
        self._failures: list[tuple[str, str, int]] = []
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def registry_host(self) -> str:
        return f"{self.endpoint}/registry/proj/repo"

    def start(self) -> FakeVertex:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, method: str, path_pattern: str, status: int, *, times: int = 1) -> None:
        """Answer the next `times` requests whose path matches `path_pattern` with `status`."""
        with self._lock:
            self._failures.extend([(method, path_pattern, status)] * times)

    def calls(self, method: str, pattern: str) -> list[Request]:
        """Recorded requests with this method whose path matches `pattern`."""
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    # ---- routing -------------------------------------------------------------------------

    def _injected(self, method: str, path: str) -> int | None:
        with self._lock:
            for index, (m, pattern, status) in enumerate(self._failures):
                if m == method and re.search(pattern, path):
                    del self._failures[index]
                    return status
        return None

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        if path.startswith("/registry/"):
            return self._registry(method, path, body)
        match = re.match(
            r"^/v1/(projects/[^/]+/locations/[^/]+)/(pipelineJobs|schedules)(.*)$", path
        )
        if not match:
            return 404, {
                "error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}
            }
        parent, kind, rest = match.groups()
        if kind == "pipelineJobs":
            return self._pipeline_jobs(method, parent, rest, query, body)
        return self._schedules(method, parent, rest, query, body)

    def _pipeline_jobs(
        self, method: str, parent: str, rest: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        if method == "POST" and not rest:
            job_id = (query.get("pipelineJobId") or [f"job-{next(self._ids)}"])[0]
            name = f"{parent}/pipelineJobs/{job_id}"
            if name in self.pipeline_jobs:
                return 409, _error(409, f"{name} already exists")
            job = dict(body)
            job.update(name=name, state="PIPELINE_STATE_PENDING", createTime=_now())
            self.pipeline_jobs[name] = job
            return 200, job
        name = f"{parent}/pipelineJobs{rest}"
        if method == "GET" and name in self.pipeline_jobs:
            return 200, self.pipeline_jobs[name]
        return 404, _error(404, f"{name} not found")

    def _schedules(
        self, method: str, parent: str, rest: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        if method == "POST" and not rest:
            name = f"{parent}/schedules/{next(self._ids)}"
            schedule = dict(body)
            schedule.update(name=name, state="ACTIVE", createTime=_now(), updateTime=_now())
            self.schedules[name] = schedule
            return 200, schedule
        if method == "GET" and not rest:
            wanted = None
            found = re.search(r'display_name\s*=\s*"([^"]*)"', (query.get("filter") or [""])[0])
            if found:
                wanted = found.group(1)
            listed = [
                s
                for s in self.schedules.values()
                if s["name"].startswith(parent) and (wanted is None or s["displayName"] == wanted)
            ]
            return 200, {"schedules": listed}
        action = ""
        if ":" in rest:
            rest, action = rest.split(":", 1)
        name = f"{parent}/schedules{rest}"
        schedule = self.schedules.get(name)
        if schedule is None:
            return 404, _error(404, f"{name} not found")
        if method == "GET":
            return 200, schedule
        if method == "POST" and action in ("pause", "resume"):
            schedule["state"] = "PAUSED" if action == "pause" else "ACTIVE"
            return 200, {}
        if method == "PATCH":
            mask = (query.get("updateMask") or [""])[0]
            fields = [
                ".".join(_camel(part) for part in f.split("."))
                for f in filter(None, mask.split(","))
            ]
            # v1 UpdateSchedule: "The non-empty fields cannot be unset."
            unset = [u for f in fields for u in _unset(schedule, body, f)]
            if unset:
                return 400, _error(400, f"non-empty fields cannot be unset: {', '.join(unset)}")
            for field in filter(None, mask.split(",")):
                dotted = ".".join(_camel(part) for part in field.split("."))
                _set_path(schedule, dotted, _get_path(body, dotted))
            schedule["updateTime"] = _now()
            return 200, schedule
        if method == "DELETE":
            del self.schedules[name]
            return 200, {
                "name": f"{name}/operations/{next(self._ids)}",
                "done": True,
                "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
            }
        return 400, _error(400, f"unsupported {method} {name}:{action}")

    def _registry(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        host_path = "/registry/proj/repo"
        if not path.startswith(host_path):
            return 404, "repository not found"
        rest = path[len(host_path) :].strip("/")
        if method == "POST" and not rest:
            content, tags = body
            spec = json.loads(content)
            package = spec["pipelineInfo"]["name"]
            version = "sha256:" + hashlib.sha256(content).hexdigest()
            entry = self.packages.setdefault(package, {"versions": {}, "tags": {}})
            entry["versions"][version] = content
            for tag in filter(None, tags.split(",")):
                entry["tags"][tag] = version
            return 200, f"{package}/{version}"
        if method == "GET" and rest.count("/") == 1:
            package, ref = rest.split("/")
            entry = self.packages.get(package)
            if entry is None:
                return 404, "package not found"
            version = entry["tags"].get(ref, ref)
            if version not in entry["versions"]:
                return 404, "version not found"
            return 200, entry["versions"][version]
        return 404, "not found"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parsed.query)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body: Any = None
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("multipart/form-data"):
                    message = BytesParser(policy=HTTP).parsebytes(
                        f"Content-Type: {ctype}\r\n\r\n".encode() + raw
                    )
                    parts = {
                        p.get_param("name", header="content-disposition"): p
                        for p in message.iter_parts()
                    }
                    content = parts["content"].get_payload(decode=True)
                    tags = (
                        parts["tags"].get_payload(decode=True).decode() if "tags" in parts else ""
                    )
                    body = (content, tags)
                    recorded: Any = {"tags": tags, "content": json.loads(content)}
                    recorded["description"] = self.headers.get("description")
                elif raw:
                    body = json.loads(raw)
                    recorded = body
                else:
                    recorded = None
                fake.requests.append(Request(self.command, parsed.path, query, recorded))
                status = fake._injected(self.command, parsed.path)
                if status is not None:
                    payload: Any = _error(status, f"injected {status}")
                else:
                    with fake._lock:
                        status, payload = fake._route(self.command, parsed.path, query, body)
                if isinstance(payload, bytes | str):
                    data = payload.encode() if isinstance(payload, str) else payload
                    ctype_out = "text/plain"
                else:
                    data = json.dumps(payload).encode()
                    ctype_out = "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype_out)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

        return Handler


def _error(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message,
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }
