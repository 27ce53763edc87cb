"""A client for OCI distribution registries (Quay, Harbor, CNCF distribution, …) over HTTP.

Speaks the distribution API directly with `requests`: bearer-token and basic-auth challenges,
blob existence checks, chunked uploads with a digest, cross-repository mounts, manifests by
digest, tag lists and referrers — through the referrers API where the registry has one, and
through the referrers tag schema (`sha256-<hex>` index) where it hasn't (distribution 2.8).

Every failure is one of the `RegistryError` subclasses, with a message a person can act on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urljoin, urlparse

import requests
from django.conf import settings

from portal import tracing
from portal.api import ApplicationError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
IMAGE_MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST))

CHUNK_SIZE = 8 * 1024 * 1024
REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                           r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class RegistryError(Exception):
    """The registry could not do what was asked; `str()` says what and what to do."""


NOT_CONFIGURED = ("No OCI registry is configured: set REGISTRY_URL (with REGISTRY_USERNAME and "
                  "REGISTRY_PASSWORD if the registry needs them) in the portal's environment "
                  "and restart the portal and its workers.")


class RegistryNotConfigured(RegistryError, ApplicationError):
    """REGISTRY_URL is empty. Also an `ApplicationError`, so every page, API and command
    that needs the registry answers it like any refusal — what to set, never a 500."""

    def __init__(self, message: str = NOT_CONFIGURED):
        super().__init__(message)


class RegistryUnavailable(RegistryError):
    pass


class RegistryAuthError(RegistryError):
    pass


class RegistryNotFound(RegistryError):
    pass


class DigestMismatch(RegistryError):
    pass


class UnsupportedMediaType(RegistryError):
    pass


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def referrers_tag(digest: str) -> str:
    """The fallback tag that lists the referrers of `digest` (`sha256:ab…` → `sha256-ab…`)."""
    return digest.replace(":", "-", 1)


def check_repository(name: str) -> str:
    if not REPOSITORY_RE.match(name or "") or len(name) > 255:
        raise RegistryError(f"“{name}” is not a valid repository name: use lower-case letters, "
                            "digits, dots, dashes and slashes.")
    return name


@dataclass(frozen=True)
class Descriptor:
    """An OCI descriptor: what a manifest or an index says about one blob or manifest (its
    media type, digest and size; an artifact type and annotations where it has them)."""

    media_type: str
    digest: str
    size: int
    artifact_type: str = ""
    annotations: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> Descriptor:
        try:
            return cls(media_type=data.get("mediaType", ""), digest=data["digest"],
                       size=int(data["size"]), artifact_type=data.get("artifactType", ""),
                       annotations=data.get("annotations") or {})
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UnsupportedMediaType(f"A descriptor in the manifest is malformed ({exc}).") \
                from exc

    def to_json(self) -> dict:
        data = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        if self.annotations:
            data["annotations"] = self.annotations
        return data


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as the registry holds it: `raw` is what its digest covers."""

    raw: bytes
    digest: str
    media_type: str

    @property
    def data(self) -> dict:
        data = json.loads(self.raw)
        if not isinstance(data, dict):
            raise UnsupportedMediaType("The manifest is not a JSON object.")
        return data

    @property
    def artifact_kind(self) -> str:
        """"modelpack" for a CNCF ModelPack artifact, else "modelcar" (an image)."""
        from models_catalog.scanning.modelpack import is_modelpack

        return "modelpack" if is_modelpack(self.data) else "modelcar"

    def image_blobs(self) -> tuple[Descriptor, list[Descriptor]]:
        """(config, layers) of an image manifest; anything else is refused."""
        if self.media_type not in IMAGE_MANIFEST_TYPES:
            raise UnsupportedMediaType(
                f"The reference points to a {self.media_type or 'manifest of unknown type'}, not "
                "a single image manifest: push one image (one platform) as the ModelCar, or "
                "one ModelPack artifact.")
        data = self.data
        if "config" not in data or not isinstance(data.get("layers"), list):
            raise UnsupportedMediaType("The image manifest has no config or no layers.")
        return (Descriptor.from_json(data["config"]),
                [Descriptor.from_json(layer) for layer in data["layers"]])


def manifest_media_type(raw: bytes, header: str = "") -> str:
    try:
        declared = json.loads(raw).get("mediaType", "")
    except (ValueError, AttributeError):
        raise UnsupportedMediaType("The manifest is not JSON.") from None
    return declared or header.split(";")[0].strip()


def _json_object(response: requests.Response, what: str) -> dict:
    """A registry answer that must be a JSON object (well-formed JSON can be anything)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise RegistryUnavailable(f"The registry's {what} is not a JSON object.")
    return data


class RegistryClient:
    """One registry, one set of credentials; bearer tokens are cached per scope."""

    def __init__(self, url: str, *, username: str = "", password: str = "",
                 verify: bool | str = True, timeout: float = 30):
        if not url:
            raise RegistryNotConfigured()
        self.url = url.rstrip("/")
        parsed = urlparse(self.url)
        self.host = parsed.netloc
        self.username = username
        self.password = password
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers["User-Agent"] = "sovereign-model-portal"
        self._tokens: dict[str, str] = {}
        self._basic = False

    # --- HTTP with authentication challenges -------------------------------------------

    def _request(self, method: str, path_or_url: str, **kwargs) -> requests.Response:
        with tracing.span(f"registry {method}", kind="client", attributes={
                "http.request.method": method, "server.address": self.url}):
            return self._send(method, path_or_url, **kwargs)

    def _send(self, method: str, path_or_url: str, *, scope: str = "", stream: bool = False,
              ok: Iterable[int] = (200,), data=None, headers: dict | None = None,
              params: dict | None = None) -> requests.Response:
        url = path_or_url if path_or_url.startswith("http") else self.url + path_or_url
        for attempt in range(2):
            request_headers = dict(headers or {})
            auth = None
            if scope in self._tokens:
                request_headers["Authorization"] = f"Bearer {self._tokens[scope]}"
            elif self._basic:
                auth = (self.username, self.password)
            if hasattr(data, "seek") and attempt:
                data.seek(0)
            try:
                response = self.session.request(method, url, data=data, headers=request_headers,
                                                params=params, auth=auth, stream=stream,
                                                timeout=self.timeout, allow_redirects=True)
            except requests.exceptions.SSLError as exc:
                raise RegistryUnavailable(
                    f"TLS with the registry at {self.url} failed ({exc.__class__.__name__}): "
                    "check REGISTRY_CA_BUNDLE / REGISTRY_TLS_VERIFY.") from exc
            except requests.RequestException as exc:
                raise RegistryUnavailable(
                    f"The registry at {self.url} is not reachable ({exc.__class__.__name__}). "
                    "Check that it is running and that REGISTRY_URL is right.") from exc
            if response.status_code == 401 and attempt == 0 and self._authenticate(
                    response.headers.get("WWW-Authenticate", ""), scope):
                continue
            break
        if response.status_code in ok:
            return response
        self._raise_for(response, method, url)
        raise AssertionError("unreachable")  # _raise_for always raises

    def _authenticate(self, challenge: str, scope: str) -> bool:
        kind, _, params = challenge.partition(" ")
        if kind.lower() == "basic":
            if not self.username or self._basic:
                return False
            self._basic = True
            return True
        if kind.lower() != "bearer":
            return False
        values = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = values.get("realm")
        if not realm:
            return False
        query = {"service": values.get("service", "")}
        if scope or values.get("scope"):
            query["scope"] = scope or values["scope"]
        auth = (self.username, self.password) if self.username else None
        try:
            response = self.session.get(realm, params=query, auth=auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RegistryUnavailable(f"The registry's token service at {realm} is not "
                                      f"reachable ({exc.__class__.__name__}).") from exc
        if response.status_code in (401, 403):
            raise RegistryAuthError("The registry refused the credentials: check "
                                    "REGISTRY_USERNAME and REGISTRY_PASSWORD.")
        if response.status_code != 200:
            raise RegistryUnavailable(f"The registry's token service answered "
                                      f"{response.status_code}.")
        body = _json_object(response, "token service's answer")
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryUnavailable("The registry's token service sent no token.")
        self._tokens[scope] = token
        return True

    def _raise_for(self, response: requests.Response, method: str, url: str) -> None:
        status = response.status_code
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            detail = ""
        where = urlparse(url).path
        if status in (401, 403):
            raise RegistryAuthError(
                f"The registry refused access to {where} ({status}"
                f"{', ' + detail if detail else ''}): check REGISTRY_USERNAME and "
                "REGISTRY_PASSWORD and the account's rights on the repository.")
        if status == 404:
            raise RegistryNotFound(f"Not found in the registry: {where}"
                                   f"{' (' + detail + ')' if detail else ''}.")
        if status == 400 and "DIGEST_INVALID" in detail:
            raise DigestMismatch(f"The registry says the digest does not match the content "
                                 f"({detail}).")
        if status in (400, 415) and "MANIFEST" in detail:
            raise UnsupportedMediaType(f"The registry refused the manifest ({detail}).")
        if status >= 500:
            raise RegistryUnavailable(f"The registry failed with {status} on {method} {where}; "
                                      "try again later.")
        raise RegistryError(f"The registry answered {status} to {method} {where}"
                            f"{': ' + detail if detail else ''}.")

    @staticmethod
    def _scope(repository: str, push: bool = False) -> str:
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    # --- API ----------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise unless the registry answers and accepts the credentials."""
        self._request("GET", "/v2/", scope="")

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self._request("HEAD", f"/v2/{repository}/blobs/{digest}",
                                 scope=self._scope(repository), ok=(200, 404))
        return response.status_code == 200

    def blob_open(self, repository: str, digest: str) -> requests.Response:
        """A streaming response for the blob; read it with `blob_chunks` to verify it."""
        return self._request("GET", f"/v2/{repository}/blobs/{digest}",
                             scope=self._scope(repository), stream=True)

    def blob_chunks(self, repository: str, descriptor: Descriptor,
                    chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The blob's bytes; raises DigestMismatch at the end unless digest and size match."""
        response = self.blob_open(repository, descriptor.digest)
        hasher = hashlib.sha256()
        size = 0
        try:
            for chunk in response.iter_content(chunk_size):
                hasher.update(chunk)
                size += len(chunk)
                if size > descriptor.size:
                    raise DigestMismatch(f"Blob {descriptor.digest} is larger than the "
                                         f"{descriptor.size} bytes its manifest declares.")
                yield chunk
        except requests.RequestException as exc:
            raise RegistryUnavailable(f"Reading blob {descriptor.digest} from the registry "
                                      f"failed ({exc.__class__.__name__}).") from exc
        finally:
            response.close()
        actual = "sha256:" + hasher.hexdigest()
        if actual != descriptor.digest or size != descriptor.size:
            raise DigestMismatch(f"Blob {descriptor.digest} does not match its content "
                                 f"(got {actual}, {size} bytes; expected {descriptor.size}).")

    def blob_download(self, repository: str, descriptor: Descriptor, target: IO[bytes]) -> None:
        for chunk in self.blob_chunks(repository, descriptor):
            target.write(chunk)

    def blob_upload(self, repository: str, digest: str, stream: IO[bytes], size: int, *,
                    chunk_size: int = CHUNK_SIZE) -> bool:
        """Upload a blob from a stream in chunks. Returns False when it already existed."""
        if self.blob_exists(repository, digest):
            return False
        scope = self._scope(repository, push=True)
        response = self._request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope,
                                 ok=(202,))
        location = urljoin(self.url + "/", response.headers["Location"])
        hasher = hashlib.sha256()
        offset = 0
        while True:
            chunk = stream.read(chunk_size)
            if not chunk:
                break
            hasher.update(chunk)
            response = self._request(
                "PATCH", location, scope=scope, ok=(202,), data=chunk,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                         "Content-Length": str(len(chunk))})
            offset += len(chunk)
            location = urljoin(self.url + "/", response.headers["Location"])
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest or offset != size:
            self._request("DELETE", location, scope=scope, ok=(204, 404))
            raise DigestMismatch(f"Blob {digest} in the archive does not match its content "
                                 f"(got {actual}, {offset} bytes; expected {size}).")
        separator = "&" if "?" in location else "?"
        self._request("PUT", f"{location}{separator}digest={digest}", scope=scope, ok=(201,),
                      headers={"Content-Length": "0"}, data=b"")
        return True

    def blob_put(self, repository: str, data: bytes) -> Descriptor:
        """Upload a small blob in one request (monolithic); returns its digest and size."""
        digest = sha256_digest(data)
        if not self.blob_exists(repository, digest):
            scope = self._scope(repository, push=True)
            response = self._request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope,
                                     ok=(202,))
            location = urljoin(self.url + "/", response.headers["Location"])
            separator = "&" if "?" in location else "?"
            self._request("PUT", f"{location}{separator}digest={digest}", scope=scope,
                          ok=(201,), data=data,
                          headers={"Content-Type": "application/octet-stream"})
        return Descriptor(media_type="", digest=digest, size=len(data))

    def blob_mount(self, *, source: str, target: str, descriptor: Descriptor) -> None:
        """Make `descriptor`'s blob exist in `target`, mounting it from `source` when the
        registry allows, otherwise streaming it across with its digest verified."""
        if self.blob_exists(target, descriptor.digest):
            return
        scope = f"{self._scope(target, push=True)} {self._scope(source)}"
        response = self._request(
            "POST", f"/v2/{target}/blobs/uploads/", scope=scope, ok=(201, 202),
            params={"mount": descriptor.digest, "from": source})
        if response.status_code == 201:
            return
        # Not mounted (other storage, no rights on the source): copy, digest-checked.
        location = urljoin(self.url + "/", response.headers["Location"])
        self._request("DELETE", location, scope=scope, ok=(204, 404))
        stream = _ChunkStream(self.blob_chunks(source, descriptor))
        self.blob_upload(target, descriptor.digest, stream, descriptor.size)

    def manifest_get(self, repository: str, reference: str) -> Manifest:
        """The manifest by tag or digest; a digest reference is verified against the bytes."""
        response = self._request("GET", f"/v2/{repository}/manifests/{reference}",
                                 scope=self._scope(repository),
                                 headers={"Accept": MANIFEST_ACCEPT})
        raw = response.content
        digest = sha256_digest(raw)
        if DIGEST_RE.match(reference) and digest != reference:
            raise DigestMismatch(f"The manifest the registry sent for {reference} hashes to "
                                 f"{digest}.")
        header_digest = response.headers.get("Docker-Content-Digest")
        if header_digest and header_digest != digest:
            raise DigestMismatch(f"The registry says the manifest is {header_digest} but its "
                                 f"content hashes to {digest}.")
        return Manifest(raw=raw, digest=digest,
                        media_type=manifest_media_type(raw, response.headers.get(
                            "Content-Type", "")))

    def manifest_put(self, repository: str, reference: str, raw: bytes,
                     media_type: str) -> str:
        """Store the manifest under a tag or its digest; returns the digest the registry
        computed, which must equal ours."""
        digest = sha256_digest(raw)
        response = self._request("PUT", f"/v2/{repository}/manifests/{reference}",
                                 scope=self._scope(repository, push=True), ok=(201,),
                                 data=raw, headers={"Content-Type": media_type})
        stored = response.headers.get("Docker-Content-Digest", digest)
        if stored != digest:
            raise DigestMismatch(f"The registry stored the manifest as {stored}, not {digest}.")
        return digest

    def tags_list(self, repository: str) -> list[str]:
        response = self._request("GET", f"/v2/{repository}/tags/list",
                                 scope=self._scope(repository), ok=(200, 404))
        if response.status_code == 404:
            return []
        tags = _json_object(response, "tag list").get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise RegistryUnavailable("The registry's tag list is not a list of names.")
        return sorted(tags)

    # --- Referrers ----------------------------------------------------------------------

    def referrers(self, repository: str, digest: str,
                  artifact_type: str = "") -> list[Descriptor]:
        """Artifacts whose subject is `digest`: from the referrers API, or from the
        referrers tag where the registry has no such API (distribution 2.8)."""
        response = self._request("GET", f"/v2/{repository}/referrers/{digest}",
                                 scope=self._scope(repository), ok=(200, 404),
                                 headers={"Accept": OCI_INDEX},
                                 params={"artifactType": artifact_type} if artifact_type else None)
        index = None
        if response.status_code == 200 and response.headers.get(
                "Content-Type", "").startswith(OCI_INDEX):
            index = _json_object(response, "referrers index")
        else:
            try:
                index = self.manifest_get(repository, referrers_tag(digest)).data
            except RegistryNotFound:
                return []
        found = [Descriptor.from_json(d) for d in index.get("manifests") or []]
        return [d for d in found if not artifact_type or d.artifact_type == artifact_type]

    def artifact_attach(self, repository: str, *, subject: Manifest, artifact_type: str,
                        payload: bytes, payload_media_type: str,
                        annotations: dict | None = None) -> str:
        """Push `payload` as an OCI artifact whose subject is `subject` and list it in the
        referrers tag, so clients without a referrers API find it. Returns its digest."""
        empty = self.blob_put(repository, EMPTY_JSON)
        layer = self.blob_put(repository, payload)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": empty.digest, "size": empty.size},
            "layers": [{"mediaType": payload_media_type, "digest": layer.digest,
                        "size": layer.size}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest,
                        "size": len(subject.raw)},
            "annotations": annotations or {},
        }
        raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        digest = self.manifest_put(repository, sha256_digest(raw), raw, OCI_MANIFEST)
        if not self._has_referrers_api(repository, subject.digest):
            self._referrers_tag_add(repository, subject.digest, Descriptor(
                media_type=OCI_MANIFEST, digest=digest, size=len(raw),
                artifact_type=artifact_type, annotations=annotations or {}))
        return digest

    def _has_referrers_api(self, repository: str, digest: str) -> bool:
        response = self._request("GET", f"/v2/{repository}/referrers/{digest}",
                                 scope=self._scope(repository), ok=(200, 404),
                                 headers={"Accept": OCI_INDEX})
        return response.status_code == 200 and response.headers.get(
            "Content-Type", "").startswith(OCI_INDEX)

    def _referrers_tag_add(self, repository: str, subject_digest: str,
                           descriptor: Descriptor) -> None:
        tag = referrers_tag(subject_digest)
        try:
            index = self.manifest_get(repository, tag).data
        except RegistryNotFound:
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        manifests = [m for m in index.get("manifests") or []
                     if isinstance(m, dict) and m.get("digest") != descriptor.digest]
        manifests.append(descriptor.to_json())
        index["manifests"] = manifests
        raw = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
        self.manifest_put(repository, tag, raw, OCI_INDEX)

    # --- Copy by digest -----------------------------------------------------------------

    def copy_by_digest(self, *, source: str, target: str, digest: str,
                       tag: str = "") -> Manifest:
        """Copy an image from `source` to `target` by digest: blobs mounted (or streamed with
        their digests checked), then the very same manifest bytes put by digest. The result's
        digest is verified to be `digest`."""
        manifest = self.manifest_get(source, digest)
        config, layers = manifest.image_blobs()
        for descriptor in [config, *layers]:
            self.blob_mount(source=source, target=target, descriptor=descriptor)
        stored = self.manifest_put(target, digest, manifest.raw, manifest.media_type)
        if tag:
            self.manifest_put(target, tag, manifest.raw, manifest.media_type)
        copied = self.manifest_get(target, digest)
        if stored != digest or copied.digest != digest:
            raise DigestMismatch(f"The copy in {target} is {copied.digest}, not {digest}.")
        return copied


class _ChunkStream:
    """A read()-able view over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def registry_configured() -> bool:
    return bool(settings.REGISTRY_URL)


def registry_client() -> RegistryClient:
    """The configured registry; RegistryNotConfigured when REGISTRY_URL is empty."""
    verify: bool | str = settings.REGISTRY_TLS_VERIFY
    if verify and settings.REGISTRY_CA_BUNDLE:
        verify = settings.REGISTRY_CA_BUNDLE
    return RegistryClient(settings.REGISTRY_URL, username=settings.REGISTRY_USERNAME,
                          password=settings.REGISTRY_PASSWORD, verify=verify,
                          timeout=settings.REGISTRY_TIMEOUT_SECONDS)


def registry_host() -> str:
    """Where clusters pull published images from (`oci://<host>/…`); RegistryNotConfigured
    when REGISTRY_URL is empty."""
    if not registry_configured():
        raise RegistryNotConfigured()
    return urlparse(settings.REGISTRY_URL).netloc
