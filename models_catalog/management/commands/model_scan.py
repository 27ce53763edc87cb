"""Scan a ModelCar archive or a model directory offline, before uploading it."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand

from models_catalog.scanning import (
    ScanAborted,
    ScanPolicy,
    UnreadableArchive,
    policy_from_settings,
    scan_directory,
    scan_oci_archive,
)
from models_catalog.scanning.policy import POLICIES


class Command(BaseCommand):
    help = ("Scan an OCI image archive (podman save --format oci-archive, docker save; a CNCF "
            "ModelPack artifact as an OCI image layout tar) or a "
            "directory of model files. Touches neither the database nor the registry. Prints "
            "the verdict and findings as JSON; exits 0 when clean and allowed by the policy, 1 "
            "when suspicious, malicious or refused by the policy, 2 when the input is "
            "unreadable or there is not enough disk space to unpack it.")
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("path", help="an image archive (.tar) or a directory")
        parser.add_argument("--policy", choices=POLICIES,
                            help="override MODEL_SCAN_POLICY for this scan")

    def handle(self, *args, path: str, policy: str | None, **options):
        target = Path(path)
        chosen = ScanPolicy(policy) if policy else policy_from_settings()
        try:
            if target.is_dir():
                report = scan_directory(target, policy=chosen)
            elif target.is_file():
                with tempfile.TemporaryDirectory(prefix="model-scan-") as workdir:
                    report = scan_oci_archive(target, policy=chosen, workdir=Path(workdir))
            else:
                raise UnreadableArchive(f"{path} is neither a file nor a directory.")
        except (UnreadableArchive, ScanAborted) as exc:
            sys.stderr.write(f"model_scan: {exc}\n")
            raise SystemExit(2) from None
        self.stdout.write(json.dumps(report.to_dict(), indent=2))
        raise SystemExit(0 if report.verdict == "clean" and report.passes_policy else 1)
