"""A scan checks there is free disk space before it starts and stops at its disk quota; either
way it cleans up its scratch space, keeps the version (quarantined, with the reason and a
retry) and touches nothing else."""

import shutil
import uuid
from collections import namedtuple

import pytest

from models_catalog import registry as oci
from models_catalog import services
from models_catalog.models import VersionStatus
from models_catalog.scanning import ScanLimits, ScanPolicy, scan_oci_archive
from models_catalog.scanning.disk import DiskQuotaExceeded, InsufficientDiskSpace
from tests.models_catalog.conftest import push_image
from tests.models_catalog.test_model_scan_command import run
from tests.support.modelcar import CLEAN_FILES, build_modelcar_archive, safetensors_bytes

STRICT = ScanPolicy("safetensors_gguf_only")
BIG_FILES = {**CLEAN_FILES, "big.safetensors": safetensors_bytes({"w": ("F32", [64, 1024])})}
Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def disk_with_free(monkeypatch):
    """Make the work directory's disk report `free` bytes free: the free-space check is made
    at the process boundary, through shutil.disk_usage."""
    def set_free(free: int) -> list[str]:
        asked = []

        def disk_usage(path):
            asked.append(str(path))
            return Usage(10 * 1024**4, 10 * 1024**4 - free, free)

        monkeypatch.setattr(shutil, "disk_usage", disk_usage)
        return asked

    return set_free


def test_a_scan_stops_at_its_disk_quota_and_removes_its_scratch_space(tmp_path):
    archive = build_modelcar_archive(tmp_path / "image.tar", BIG_FILES)
    neighbour = tmp_path / "scans" / "version-other" / "layer-0"
    neighbour.parent.mkdir(parents=True)
    neighbour.write_bytes(b"another scan's file")
    workdir = tmp_path / "scans" / "version-1"
    limits = ScanLimits(max_bytes=10 * 1024**2, max_files=100, disk_quota_bytes=64 * 1024)
    with pytest.raises(DiskQuotaExceeded, match=r"MODEL_SCAN_DISK_QUOTA_BYTES \(65,536 bytes\)"):
        scan_oci_archive(archive, policy=STRICT, limits=limits, workdir=workdir)
    assert not workdir.exists()
    assert neighbour.read_bytes() == b"another scan's file" and archive.is_file()
    # The same image fits a quota of its size.
    roomy = ScanLimits(max_bytes=10 * 1024**2, max_files=100, disk_quota_bytes=1024**2)
    assert scan_oci_archive(archive, policy=STRICT, limits=roomy, workdir=workdir).passed


def test_a_scan_checks_free_space_before_it_unpacks_anything(tmp_path, disk_with_free):
    archive = build_modelcar_archive(tmp_path / "image.tar", BIG_FILES)
    asked = disk_with_free(1000)
    workdir = tmp_path / "scans" / "version-1"
    limits = ScanLimits(max_bytes=10 * 1024**2, max_files=100, disk_quota_bytes=10 * 1024**2)
    with pytest.raises(InsufficientDiskSpace) as refused:
        scan_oci_archive(archive, policy=STRICT, limits=limits, workdir=workdir)
    message = str(refused.value)
    assert str(workdir) in message and "1,000 bytes free" in message
    assert "MODEL_SCAN_WORKDIR" in message and not workdir.exists()
    assert asked == [str(tmp_path)]  # the nearest existing directory of the work dir


def test_the_offline_command_reports_the_quota_and_exits_2(tmp_path):
    archive = build_modelcar_archive(tmp_path / "image.tar", BIG_FILES)
    result = run(archive, env={"MODEL_SCAN_DISK_QUOTA_BYTES": "65536"})
    assert result.returncode == 2 and "MODEL_SCAN_DISK_QUOTA_BYTES" in result.stderr


@pytest.fixture
def quarantined(registry_client, msp_admin):
    model = services.model_create(actor=msp_admin, slug=f"disk-{uuid.uuid4().hex[:8]}",
                                  name="Disk", task="chat")
    version = services.version_create(actor=msp_admin, model=model, version="1.0")
    push_image(registry_client, f"landing/{model.slug}", "1.0",
               {**BIG_FILES, "config.json": uuid.uuid4().hex.encode()})
    services.version_register_reference(actor=msp_admin, version=version,
                                        repository=f"landing/{model.slug}", reference="1.0")
    return version


@pytest.mark.django_db
def test_a_gate_scan_over_its_quota_keeps_the_version_for_a_retry(quarantined, settings,
                                                                   msp_admin):
    neighbour = settings.MODEL_SCAN_WORKDIR / "version-other" / "layer-0"
    neighbour.parent.mkdir(parents=True)
    neighbour.write_bytes(b"another scan's file")
    settings.MODEL_SCAN_DISK_QUOTA_BYTES = 64 * 1024  # less than the image's layer
    version = services.version_scan(version_id=quarantined.pk)
    assert version.status == VersionStatus.QUARANTINED
    assert "MODEL_SCAN_DISK_QUOTA_BYTES" in version.work_error
    assert not (settings.MODEL_SCAN_WORKDIR / f"version-{version.pk}").exists()
    assert neighbour.read_bytes() == b"another scan's file"
    assert oci.registry_client().manifest_get(version.landing_repository,
                                              version.manifest_digest)
    assert not version.files.exists()

    settings.MODEL_SCAN_DISK_QUOTA_BYTES = 10 * 1024**2
    services.version_retry(actor=msp_admin, version=version)
    version = services.version_scan(version_id=version.pk)
    assert version.status == VersionStatus.AWAITING_APPROVAL, version.status_reason
    assert "big.safetensors" in {f.path for f in version.files.all()}


@pytest.mark.django_db
def test_a_gate_scan_without_free_space_says_where_and_how_much(quarantined, settings,
                                                               disk_with_free):
    settings.MODEL_SCAN_WORKDIR.mkdir(parents=True, exist_ok=True)
    asked = disk_with_free(4096)
    version = services.version_scan(version_id=quarantined.pk)
    assert version.status == VersionStatus.QUARANTINED
    assert str(settings.MODEL_SCAN_WORKDIR) in version.work_error
    assert "4,096 bytes free" in version.work_error and "needs" in version.work_error
    workdir = settings.MODEL_SCAN_WORKDIR / f"version-{version.pk}"
    assert asked == [str(workdir)]  # before the first layer was downloaded
    assert not workdir.exists()
