"""The platform's scan policy, and the limits that stop archive bombs and full disks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

# Formats that run code when loaded: a pickle somewhere inside each.
PICKLE_FORMATS = frozenset({"pickle", "pickle_compressed", "pytorch_zip", "pytorch_legacy",
                            "numpy_object", "zip_with_pickle", "tar_with_pickle"})
SAFE_WEIGHT_FORMATS = frozenset({"safetensors", "gguf"})
# Names that weights files of some framework carry. Under safetensors_gguf_only a file so
# named must be safetensors or GGUF by content, whatever else it is.
WEIGHTS_EXTENSIONS = frozenset({
    ".safetensors", ".gguf", ".ggml",
    ".bin", ".pt", ".pth", ".pt2", ".ptl", ".ckpt", ".mar", ".nemo",  # PyTorch and friends
    ".pkl", ".pickle", ".dill", ".joblib", ".sav", ".dat",  # pickles (sklearn, joblib, dill)
    ".npy", ".npz",  # NumPy
    ".h5", ".hdf5", ".keras", ".pb", ".tflite",  # Keras and TensorFlow
    ".onnx", ".msgpack", ".mlmodel", ".pdparams",  # ONNX, Flax, Core ML, PaddlePaddle
})
FORMAT_DESCRIPTIONS = {
    "safetensors": "safetensors", "gguf": "GGUF",
    "pickle": "a pickle", "pickle_compressed": "a compressed pickle (as joblib writes them)",
    "pytorch_zip": "a PyTorch zip checkpoint (pickle-based)",
    "pytorch_legacy": "a legacy PyTorch checkpoint (pickle-based)",
    "numpy": "a NumPy array", "numpy_object": "a NumPy object array (a pickle)",
    "numpy_npz": "NumPy arrays in a zip", "zip_with_pickle": "a zip archive holding pickles",
    "tar_with_pickle": "a tar archive holding pickles", "zip": "a zip archive",
    "tar": "a tar archive", "compressed": "compressed data", "json": "JSON", "text": "text",
    "other": "data of no format the scanner knows",
}


def describe(fmt: str) -> str:
    return FORMAT_DESCRIPTIONS.get(fmt, fmt)


@dataclass(frozen=True)
class ScanPolicy:
    name: str

    @property
    def allows_pickles(self) -> bool:
        return self.name == "pickle_allowed_when_clean"

    def refusal(self, rel: str, fmt: str) -> str | None:
        """Why the policy refuses this file (its path under /models and format), if it does."""
        if self.allows_pickles or fmt in SAFE_WEIGHT_FORMATS:
            return None
        what = "admits only safetensors and GGUF weights. Convert it to safetensors and upload " \
               "again."
        if fmt in PICKLE_FORMATS:
            return (f"{rel} is {describe(fmt)}, which can run code when loaded; the platform's "
                    f"policy ({self.name}) {what}")
        suffix = PurePosixPath(rel).suffix.lower()
        if suffix in WEIGHTS_EXTENSIONS:
            return (f"{rel} is named like model weights ({suffix}) but is {describe(fmt)}, not "
                    f"safetensors or GGUF; the platform's policy ({self.name}) {what}")
        return None


@dataclass(frozen=True)
class ScanLimits:
    max_bytes: int
    max_files: int
    # Bytes a scan may write to its work directory (layers downloaded, files unpacked).
    disk_quota_bytes: int | None = None


POLICIES = ("safetensors_gguf_only", "pickle_allowed_when_clean")


def policy_from_settings() -> ScanPolicy:
    from django.conf import settings

    return ScanPolicy(settings.MODEL_SCAN_POLICY)


def limits_from_settings() -> ScanLimits:
    from django.conf import settings

    return ScanLimits(max_bytes=settings.MODEL_SCAN_MAX_BYTES,
                      max_files=settings.MODEL_SCAN_MAX_FILES,
                      disk_quota_bytes=settings.MODEL_SCAN_DISK_QUOTA_BYTES)
