"""`python manage.py model_verify <model> <version>`: does the published version still match
what was approved and signed — in the database and, unless --offline, in the registry? That
includes its OpenSSF Model Signing (OMS) signature; with --models-dir the upstream
`model_signing` verifier also checks a /models tree on disk against it.

`--export-public-key FILE` and `--export-signature FILE` write what a third party needs to
verify with the public `model_signing` tool alone."""

import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from models_catalog import oms
from models_catalog.registry import NOT_CONFIGURED, registry_configured
from models_catalog.selectors import version_find
from models_catalog.signing import version_verify, version_verify_registry


class Command(BaseCommand):
    help = ("Verify a model version's signed approval statement and OMS signature (and their "
            "registry attachments).")

    def add_arguments(self, parser):
        parser.add_argument("model", nargs="?", help="the model's slug")
        parser.add_argument("version", nargs="?", help="the version label")
        parser.add_argument("--offline", action="store_true",
                            help="check the signatures and the database only, not the registry")
        parser.add_argument("--models-dir", type=Path,
                            help="also verify the files of this directory (an unpacked /models) "
                                 "against the OMS signature, with the upstream verifier")
        parser.add_argument("--export-signature", type=Path, metavar="FILE",
                            help="write the version's OMS signature (Sigstore bundle) to FILE")
        parser.add_argument("--export-public-key", type=Path, metavar="FILE",
                            help="write the platform's model-signing public key (PEM) to FILE")

    def handle(self, *args, model, version, offline: bool, models_dir: Path | None,
               export_signature: Path | None, export_public_key: Path | None, **options):
        if export_public_key:
            export_public_key.write_bytes(oms.platform_public_key_pem())
            self.stdout.write(f"Model-signing public key written to {export_public_key}")
        if not model and not version and export_public_key:
            return
        if not (model and version):
            raise CommandError("Name the model and the version to verify.")
        mv = version_find(model_slug=model, version=version)
        if mv is None:
            raise CommandError(f"No version {version!r} of model {model!r}.")
        if not offline and not registry_configured():
            raise CommandError(f"{NOT_CONFIGURED} Or add --offline to check the signature "
                               "and the database only.")
        result = version_verify(mv) if offline else version_verify_registry(mv)
        if not result:
            raise CommandError(f"{mv}: NOT verified: {result.reason}")
        if models_dir is not None:
            self._verify_tree(mv, models_dir)
        self.stdout.write(f"{mv}: verified — {result.reason}")
        self.stdout.write(f"  image   {mv.trusted_repository}@{mv.manifest_digest}")
        self.stdout.write(f"  files   {mv.files.count()} (SHA-256 each, as signed)")
        self.stdout.write(f"  SBOM    {mv.sbom_digest or 'sha256 of the stored SBOM'}")
        self.stdout.write(f"  verdict {mv.scan_verdict}; key {mv.signature_key_id}")
        if mv.model_signature:
            self.stdout.write(f"  OMS     {mv.model_signature_artifact_digest or '(database)'}; "
                              f"key {oms.key_id(oms.platform_public_key_pem())[:16]}")
        if models_dir is not None:
            self.stdout.write(f"  tree    files on disk match the OMS signature: {models_dir}")
        if export_signature:
            if not mv.model_signature:
                raise CommandError(f"{mv} has no OMS signature to export.")
            export_signature.write_text(mv.model_signature)
            self.stdout.write(f"OMS signature written to {export_signature}")

    def _verify_tree(self, mv, models_dir: Path) -> None:
        import model_signing

        if not mv.model_signature:
            raise CommandError(f"{mv} has no OMS signature to check {models_dir} against.")
        if not models_dir.is_dir():
            raise CommandError(f"{models_dir} is not a directory.")
        has_links = any(f.format == oms.SYMLINK_FORMAT for f in mv.files.all())
        with tempfile.TemporaryDirectory() as directory:
            signature = Path(directory) / "model.sig"
            signature.write_text(mv.model_signature)
            key = Path(directory) / "model-signing.pub"
            key.write_bytes(oms.platform_public_key_pem())
            config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key)
            if has_links:
                # What `--allow_symlinks` does on the CLI: links are hashed as their targets.
                config.set_hashing_config(model_signing.hashing.Config().use_file_serialization(
                    allow_symlinks=True).set_allow_symlinks(True))
            try:
                config.verify(models_dir, signature)
            except (ValueError, OSError) as exc:
                raise CommandError(f"{mv}: the files in {models_dir} do NOT match the OMS "
                                   f"signature: {_differences(mv, models_dir, has_links, exc)}"
                                   ) from None


def _differences(mv, models_dir: Path, has_links: bool, error: Exception) -> str:
    """Which files differ, in words (the upstream message prints raw digest bytes)."""
    import model_signing

    try:
        hashing = model_signing.hashing.Config().set_allow_symlinks(has_links)
        actual = {d.identifier: d.digest.digest_hex
                  for d in hashing.hash(models_dir).resource_descriptors()}
    except (ValueError, OSError):
        return str(error)
    expected = oms.verify_bundle(mv.model_signature).files
    parts = []
    for label, paths in (("changed", [p for p in expected if p in actual
                                      and actual[p] != expected[p]]),
                         ("missing", [p for p in expected if p not in actual]),
                         ("not signed", [p for p in actual if p not in expected])):
        if paths:
            parts.append(f"{label}: {', '.join(sorted(paths))}")
    return "; ".join(parts) or str(error)
