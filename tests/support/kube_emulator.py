"""A small Kubernetes API server for tests: real HTTP on loopback, objects kept per path.

Enough of the API for the portal's client: `/version`, `/api`, `/apis` and KServe's group
discovery, CRD reads, and for any resource path POST (create; 409 AlreadyExists), GET (object
or list; 404), PUT (replace; 409 on a stale resourceVersion), PATCH (JSON merge patch and JSON
patch), DELETE. Bearer-token check, fault injection (the next N requests — or the next N of
one method and path — answer 500, hang, or are carried out and then never answered), a
request log, and helpers that play the KServe controllers (set an InferenceService's or an
LLMInferenceService's status).

KServe's kinds are admitted like a v0.20 API server admits them, against the CRDs' own schemas
(`tests.support.crd_schema`): an invalid object is refused with 422, unknown fields are pruned
and defaults applied before it is stored. What was pruned is kept in `pruned`, so a test (the
`kube` fixtures check it) notices intent a real cluster would silently drop.

Written for these tests instead of kmock: kmock stores objects verbatim, ignores
resourceVersion and needs shims for namespaces, 201s and discovery paths; 409 semantics,
resourceVersion conflicts and hangs are what the tests are about.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support import crd_schema

CRD_BASE = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
ISVC_CRD_PATH = f"{CRD_BASE}/inferenceservices.serving.kserve.io"
ISVC_BASE = "/apis/serving.kserve.io/v1beta1/namespaces"
LLM_BASE = "/apis/serving.kserve.io/v1alpha2/namespaces"
LLM_KINDS = {"llminferenceservices": "LLMInferenceService",
             "llminferenceserviceconfigs": "LLMInferenceServiceConfig"}
GATEWAY_URL = "http://llm-gateway.example.test"


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def kserve_defaults(obj: dict) -> None:
    """What KServe v0.20's defaulting webhook adds to an InferenceService the portal writes
    (inference_service_defaults.go): `protocolVersion: v2` on vLLM models, in the predictor
    and in every canary predictor. Live objects therefore never equal what was sent."""
    spec = obj.get("spec") or {}
    predictors = [spec.get("predictor") or {}] + [
        c.get("predictor") or {} for c in spec.get("canary") or []]
    for predictor in predictors:
        model = predictor.get("model")
        if model and (model.get("modelFormat") or {}).get("name") == "vLLM":
            model.setdefault("protocolVersion", "v2")


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: dict, operations: list) -> dict:
    doc = copy.deepcopy(target)
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                parent.pop(last, None)
    return doc


def _is_collection(path: str) -> bool:
    """/api/v1/<plural>[/<ns>/<plural>] and /apis/<group>/<version>/…: odd → collection."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    return len(rest) % 2 == 1


class KubeEmulator:
    def __init__(self, *, token: str = "test-token", kserve_installed: bool = True,
                 llm_installed: bool = True, git_version: str = "v1.31.2"):
        self.token = token
        self.git_version = git_version
        self.llm_installed = llm_installed
        self.objects: dict[str, dict] = {}
        self.log: list[tuple[str, str]] = []
        self.pruned: list[str] = []  # fields of written objects the CRD schema pruned
        # (kind, value, method or None, path fragment or None), taken in order by the first
        # request they match
        self.faults: list[tuple[str, float, str | None, str | None]] = []
        self._lock = threading.Lock()
        self._version = 100
        self._stopping = threading.Event()
        if kserve_installed:
            self.objects[ISVC_CRD_PATH] = {
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "inferenceservices.serving.kserve.io"},
                "spec": {"group": "serving.kserve.io", "scope": "Namespaced",
                         "names": {"plural": "inferenceservices", "kind": "InferenceService"},
                         "versions": [{"name": "v1beta1", "served": True, "storage": True}]}}
        if llm_installed:
            for plural, kind in LLM_KINDS.items():
                self.objects[f"{CRD_BASE}/{plural}.serving.kserve.io"] = {
                    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                    "metadata": {"name": f"{plural}.serving.kserve.io"},
                    "spec": {"group": "serving.kserve.io", "scope": "Namespaced",
                             "names": {"plural": plural, "kind": kind},
                             "versions": [{"name": "v1alpha1", "served": True, "storage": False},
                                          {"name": "v1alpha2", "served": True,
                                           "storage": True}]}}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)

    # --- lifecycle ---
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> KubeEmulator:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    # --- test helpers ---
    def fail_next(self, count: int = 1, status: int = 500, *, method: str | None = None,
                  path_contains: str | None = None) -> None:
        self.faults.extend([("status", status, method, path_contains)] * count)

    def hang_next(self, count: int = 1, seconds: float = 5.0, *, method: str | None = None,
                  path_contains: str | None = None, after_applying: bool = False) -> None:
        """The matching requests get no answer for `seconds` (then the connection closes).
        `after_applying`: the request is carried out first, as when an API server's answer
        is lost after it stored the object."""
        kind = "hang_after" if after_applying else "hang"
        self.faults.extend([(kind, seconds, method, path_contains)] * count)

    def get(self, path: str) -> dict | None:
        with self._lock:
            found = self.objects.get(path)
            return copy.deepcopy(found) if found else None

    def put(self, path: str, obj: dict) -> None:
        with self._lock:
            self._stamp(obj)
            self.objects[path] = copy.deepcopy(obj)

    def kserve_config(self, storage_initializer: dict, *, namespace: str = "kserve") -> None:
        """KServe's inferenceservice-config ConfigMap with this storageInitializer entry."""
        self.put(f"/api/v1/namespaces/{namespace}/configmaps/inferenceservice-config", {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "inferenceservice-config", "namespace": namespace},
            "data": {"storageInitializer": json.dumps(storage_initializer)}})

    def remove(self, path: str) -> None:
        with self._lock:
            self.objects.pop(path, None)

    def isvc_path(self, namespace: str, name: str) -> str:
        return f"{ISVC_BASE}/{namespace}/inferenceservices/{name}"

    def isvc(self, namespace: str, name: str) -> dict | None:
        return self.get(self.isvc_path(namespace, name))

    def set_isvc_status(self, namespace: str, name: str, *, ready: bool = True,
                        url: str | None = None, reason: str = "") -> None:
        """Play the KServe controller: conditions Ready/PredictorReady/IngressReady and URL."""
        path = self.isvc_path(namespace, name)
        value = "True" if ready else "False"
        with self._lock:
            obj = self.objects[path]
            conditions = [{"type": kind, "status": value,
                           "lastTransitionTime": "2026-01-01T00:00:00Z",
                           **({} if ready else {"reason": reason or "NotReady",
                                                "message": f"{kind} is not ready"})}
                          for kind in ("IngressReady", "PredictorReady", "Ready")]
            canaries = obj["spec"].get("canary") or []
            if canaries:  # v0.20 Standard-mode canaries report their own readiness
                conditions.insert(0, {"type": "CanaryPredictorReady", "status": value,
                                      "lastTransitionTime": "2026-01-01T00:00:00Z"})
            obj["status"] = {"conditions": conditions,
                             "observedGeneration": obj["metadata"].get("generation", 1)}
            if canaries:
                obj["status"]["canaryStatuses"] = [
                    {"name": c["predictor"]["name"], "ready": ready,
                     "trafficPercent": c["trafficPercent"]} for c in canaries]
            if ready:
                obj["status"]["modelStatus"] = {"copies": {"totalCopies": obj["spec"][
                    "predictor"].get("minReplicas", 1)}}
                obj["status"]["components"] = {"predictor": {
                    "latestReadyRevision": f"{name}-predictor-00001",
                    "traffic": [{"revisionName": f"{name}-predictor-00001", "percent": 100,
                                 "latestRevision": True}]}}
                obj["status"]["url"] = url or f"http://{name}.{namespace}.example.test"
                obj["status"]["address"] = {
                    "url": f"http://{name}-predictor.{namespace}.svc.cluster.local"}
            self._stamp(obj)

    def llm_path(self, namespace: str, name: str, plural: str = "llminferenceservices") -> str:
        return f"{LLM_BASE}/{namespace}/{plural}/{name}"

    def llm(self, namespace: str, name: str) -> dict | None:
        return self.get(self.llm_path(namespace, name))

    def llm_config(self, namespace: str, name: str) -> dict | None:
        return self.get(self.llm_path(namespace, name, "llminferenceserviceconfigs"))

    def llm_members(self, namespace: str) -> list[dict]:
        prefix = f"{LLM_BASE}/{namespace}/llminferenceservices/"
        with self._lock:
            return [copy.deepcopy(obj) for key, obj in sorted(self.objects.items())
                    if key.startswith(prefix)]

    def set_llm_status(self, namespace: str, name: str, *, ready: bool = True,
                       reason: str = "") -> None:
        """Play KServe's LLMInferenceService controller (v0.20) for one object: its
        conditions, `url`/`addresses` on the gateway, the routing group's members with their
        weights, and ready replicas. A stopped object (`serving.kserve.io/stop: "true"`) has
        no workloads and no route; a baseRef that resolves to no LLMInferenceServiceConfig
        (in the namespace or in `kserve`) is `PresetsCombined: False, ConfigNotFound`."""
        path = self.llm_path(namespace, name)
        stamp = "2026-01-01T00:00:00Z"
        with self._lock:
            obj = self.objects[path]
            spec = obj["spec"]
            stopped = (obj["metadata"].get("annotations") or {}).get(
                "serving.kserve.io/stop") == "true"
            missing = [ref["name"] for ref in spec.get("baseRefs") or []
                       if self.llm_path(namespace, ref["name"], "llminferenceserviceconfigs")
                       not in self.objects and self.llm_path(
                           "kserve", ref["name"], "llminferenceserviceconfigs")
                       not in self.objects]

            def condition(kind, ok, why=""):
                found = {"type": kind, "status": "True" if ok else "False",
                         "lastTransitionTime": stamp}
                if not ok:
                    found.update(reason=why or reason or "NotReady",
                                 message=f"{kind} is not ready")
                return found

            serving = ready and not stopped and not missing
            conditions = [condition("PresetsCombined", not missing, "ConfigNotFound")]
            if missing:
                conditions[0]["message"] = (f"LLMInferenceServiceConfig {missing[0]} not found "
                                            f"in namespaces [{namespace} kserve]")
            conditions.append(condition("MainWorkloadReady", serving,
                                        "Stopped" if stopped else ""))
            if spec.get("prefill"):
                conditions.append(condition("PrefillWorkloadReady", serving,
                                            "Stopped" if stopped else ""))
            if spec.get("scaling"):
                conditions.append(condition("ScalingReady", serving))
            conditions.append(condition("WorkloadsReady", serving, "Stopped" if stopped else ""))
            route = (spec.get("router") or {}).get("route")
            if not stopped and route is not None:
                conditions.append(condition("HTTPRoutesReady", serving))
            if not stopped and (spec.get("router") or {}).get("scheduler") is not None:
                conditions += [condition("InferencePoolReady", serving),
                               condition("SchedulerWorkloadReady", serving)]
            conditions.append(condition("RouterReady", serving))
            group = (route or {}).get("group")
            status = {"observedGeneration": obj["metadata"].get("generation", 1)}
            if group and not stopped:
                members = []
                for key, other in sorted(self.objects.items()):
                    if not key.startswith(f"{LLM_BASE}/{namespace}/llminferenceservices/"):
                        continue
                    other_route = ((other["spec"].get("router") or {}).get("route") or {})
                    if other_route.get("group") != group:
                        continue
                    other_stopped = (other["metadata"].get("annotations") or {}).get(
                        "serving.kserve.io/stop") == "true"
                    members.append({"name": other["metadata"]["name"],
                                    "weight": other_route.get("weight", 0),
                                    **({"stopped": True} if other_stopped else {})})
                conditions += [condition("GroupReady", serving),
                               {"type": "GroupDegraded", "status": "False",
                                "lastTransitionTime": stamp}]
                status["router"] = {"group": {"name": group, "members": members}}
            conditions.append(condition("Ready", serving, "Stopped" if stopped else ""))
            status["conditions"] = conditions
            if serving:
                url = f"{GATEWAY_URL}/{namespace}/{name}"
                model_name = spec["model"].get("name", name)
                status["url"] = url
                status["addresses"] = [
                    {"url": url, "models": [{"name": model_name}]},
                    {"url": f"{GATEWAY_URL}/publishers/{namespace}/models/{model_name}",
                     "models": [{"name": model_name}]}]
                replicas = spec.get("replicas")
                if replicas is None:
                    replicas = (spec.get("scaling") or {}).get("minReplicas", 1)
                status["workloads"] = {"primary": {"kind": "Deployment",
                                                   "name": f"{name}-kserve",
                                                   "readyReplicas": replicas}}
            obj["status"] = status
            self._stamp(obj)

    def count(self, method: str, fragment: str = "") -> int:
        return sum(1 for m, p in self.log if m == method and fragment in p)

    # --- internals ---
    def _take_fault(self, method: str, path: str) -> tuple[str, float] | None:
        with self._lock:
            for index, (kind, value, on_method, fragment) in enumerate(self.faults):
                if (on_method is None or on_method == method) and (
                        fragment is None or fragment in path):
                    del self.faults[index]
                    return kind, value
        return None

    def _stamp(self, obj: dict) -> None:
        self._version += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._version)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")

    def _group_list(self) -> dict:
        versions = [v for v, on in (("v1beta1", True), ("v1alpha2", self.llm_installed)) if on]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
            "name": "serving.kserve.io",
            "versions": [{"groupVersion": f"serving.kserve.io/{v}", "version": v}
                         for v in versions],
            "preferredVersion": {"groupVersion": "serving.kserve.io/v1beta1",
                                 "version": "v1beta1"}}]}

    def _resource_list(self, version: str) -> dict | None:
        """`/apis/serving.kserve.io/<version>`: what the group serves at that version."""
        kinds = {"v1beta1": {"inferenceservices": "InferenceService"},
                 "v1alpha2": LLM_KINDS if self.llm_installed else None}.get(version)
        if not kinds:
            return None
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"serving.kserve.io/{version}",
                "resources": [{"name": plural, "singularName": kind.lower(), "namespaced": True,
                               "kind": kind, "verbs": ["create", "delete", "get", "list",
                                                       "patch", "update", "watch"]}
                              for plural, kind in kinds.items()]}

    def _admit(self, path: str, body: dict) -> tuple[dict, dict | None]:
        """KServe's kinds as the API server admits them: (what to store, None) or
        (body, a 422 Status)."""
        if crd_schema.crd_for_path(path) is None:
            return body, None
        if path.startswith(LLM_BASE) and not self.llm_installed:
            return body, _status(404, "NotFound", "the server could not find the requested "
                                                  "resource")
        admission = crd_schema.admit(body)
        if admission.errors:
            return body, _status(422, "Invalid", f"{body.get('kind')} "
                                                 f"{body.get('metadata', {}).get('name')!r} is "
                                                 f"invalid: " + "; ".join(admission.errors))
        self.pruned += [f"{path}: {what}" for what in admission.pruned]
        return admission.stored, None

    def _handler(self):
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes: without TCP_NODELAY, Nagle's
            # algorithm and the client's delayed ACK add ~40 ms to every answer.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"null")

            def _dispatch(self):
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                body = self._body() if self.command in ("POST", "PUT", "PATCH") else None
                emulator.log.append((self.command, path))
                fault = emulator._take_fault(self.command, path)
                if fault:
                    kind, value = fault
                    if kind == "hang_after":
                        with emulator._lock:
                            getattr(self, f"_{self.command.lower()}")(path, body)
                    if kind in ("hang", "hang_after"):
                        emulator._stopping.wait(value)
                        self.close_connection = True
                        return
                    return self._send(int(value), _status(int(value), "InternalError",
                                                          "injected fault"))
                if emulator.token and self.headers.get("Authorization") != \
                        f"Bearer {emulator.token}":
                    return self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                if path == "/version":
                    major, minor = emulator.git_version.lstrip("v").split(".")[:2]
                    return self._send(200, {
                        "major": major, "minor": minor, "gitVersion": emulator.git_version,
                        "gitCommit": "0" * 40, "gitTreeState": "clean",
                        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
                        "compiler": "gc", "platform": "linux/amd64"})
                if path == "/api":
                    return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
                if path == "/apis":
                    return self._send(200, emulator._group_list())
                if path.startswith("/apis/serving.kserve.io/") and path.count("/") == 3:
                    found = emulator._resource_list(path.rsplit("/", 1)[1])
                    if found is None:
                        return self._send(404, _status(404, "NotFound",
                                                       "the server could not find the "
                                                       "requested resource"))
                    return self._send(200, found)
                with emulator._lock:
                    return self._send(*getattr(self, f"_{self.command.lower()}")(path, body))

            def _get(self, path, _body):
                if path in emulator.objects:
                    return 200, emulator.objects[path]
                if _is_collection(path):
                    prefix = path + "/"
                    items = [obj for key, obj in emulator.objects.items()
                             if key.startswith(prefix) and "/" not in key[len(prefix):]]
                    return 200, {"kind": "List", "apiVersion": "v1", "metadata": {},
                                 "items": items}
                return 404, _status(404, "NotFound", f"{path} not found")

            def _post(self, path, body):
                name = (body.get("metadata") or {}).get("name")
                if not name:
                    return 422, _status(422, "Invalid", "metadata.name is required")
                item = f"{path}/{name}"
                if item in emulator.objects:
                    return 409, _status(409, "AlreadyExists", f"{name} already exists")
                body["metadata"]["generation"] = 1
                body, refused = emulator._admit(path, body)
                if refused:
                    return refused["code"], refused
                if "/inferenceservices" in path:
                    kserve_defaults(body)
                emulator._stamp(body)
                emulator.objects[item] = body
                return 201, body

            def _put(self, path, body):
                live = emulator.objects.get(path)
                if live is None:
                    return 404, _status(404, "NotFound", f"{path} not found")
                wanted = (body.get("metadata") or {}).get("resourceVersion")
                if wanted and wanted != live["metadata"]["resourceVersion"]:
                    return 409, _status(409, "Conflict", "the object has been modified")
                body.setdefault("metadata", {})["uid"] = live["metadata"]["uid"]
                body, refused = emulator._admit(path, body)
                if refused:
                    return refused["code"], refused
                if "status" in live:
                    body["status"] = live["status"]  # status is a subresource
                if "/inferenceservices/" in path:
                    kserve_defaults(body)
                body["metadata"]["generation"] = live["metadata"].get("generation", 1) + (
                    body.get("spec") != live.get("spec"))
                emulator._stamp(body)
                emulator.objects[path] = body
                return 200, body

            def _patch(self, path, body):
                live = emulator.objects.get(path)
                if live is None:
                    return 404, _status(404, "NotFound", f"{path} not found")
                if "json-patch" in (self.headers.get("Content-Type") or ""):
                    patched = json_patch(live, body)
                else:
                    patched = merge_patch(live, body)
                patched, refused = emulator._admit(path, patched)
                if refused:
                    return refused["code"], refused
                emulator._stamp(patched)
                emulator.objects[path] = patched
                return 200, patched

            def _delete(self, path, _body):
                if emulator.objects.pop(path, None) is None:
                    return 404, _status(404, "NotFound", f"{path} not found")
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}

            def do_GET(self):
                self._dispatch()

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        return Handler


def start_emulator(**kwargs) -> KubeEmulator:
    return KubeEmulator(**kwargs).start()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy (for end-to-end tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
