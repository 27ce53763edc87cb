import pytest

from models_catalog.models import VersionStatus
from models_catalog.signing import version_verify
from tests.factories import published_version

pytestmark = pytest.mark.django_db


def test_a_published_signed_version_verifies():
    result = version_verify(published_version())
    assert result.ok, result.reason


@pytest.mark.parametrize("change, reason", [
    (lambda v: setattr(v, "manifest_digest", "sha256:" + "0" * 64), "image digest"),
    (lambda v: setattr(v, "trusted_repository", "trusted/other"), "trusted repository"),
    (lambda v: setattr(v, "sbom", v.sbom + " "), "SBOM"),
    (lambda v: setattr(v, "scan_verdict", "suspicious"), "scan verdict"),
    (lambda v: setattr(v, "signature", v.signature[:-4] + "AAA="), "signature"),
    (lambda v: setattr(v, "status", VersionStatus.REJECTED), "not published"),
    (lambda v: setattr(v, "signature", ""), "not signed"),
])
def test_any_change_after_signing_fails_verification(change, reason):
    version = published_version()
    change(version)
    result = version_verify(version)
    assert not result.ok
    assert reason in result.reason


def test_a_changed_file_digest_fails_verification():
    version = published_version()
    entry = version.files.first()
    entry.sha256 = "f" * 64
    entry.save()
    result = version_verify(version)
    assert not result.ok and "file inventory" in result.reason
