"""The platform's scan policy and the limits that stop archive bombs."""

from __future__ import annotations

from dataclasses import dataclass

PICKLE_FORMATS = frozenset({"pickle", "pytorch_zip", "pytorch_legacy", "numpy_object",
                            "joblib"})


@dataclass(frozen=True)
class ScanPolicy:
    name: str

    @property
    def allows_pickles(self) -> bool:
        return self.name == "pickle_allowed_when_clean"

    def refuses_format(self, fmt: str) -> bool:
        return fmt in PICKLE_FORMATS and not self.allows_pickles


@dataclass(frozen=True)
class ScanLimits:
    max_bytes: int
    max_files: int


POLICIES = ("safetensors_gguf_only", "pickle_allowed_when_clean")


def policy_from_settings() -> ScanPolicy:
    from django.conf import settings

    return ScanPolicy(settings.MODEL_SCAN_POLICY)


def limits_from_settings() -> ScanLimits:
    from django.conf import settings

    return ScanLimits(max_bytes=settings.MODEL_SCAN_MAX_BYTES,
                      max_files=settings.MODEL_SCAN_MAX_FILES)
