"""CNCF ModelPack artifacts (https://github.com/modelpack/model-spec): what KitOps and Docker
build. An OCI image manifest whose `artifactType` is the ModelPack manifest type, whose config
is the ModelPack config, and whose layers hold the model's files — weights, their
configuration (tokenizer, config.json), docs, code, datasets — each as one raw file (named by
the `org.cncf.model.filepath` annotation) or as a tar of files relative to the model's root.

The scanner puts those files where a ModelCar keeps them (`/models`), so one inventory, one
set of checks and one policy cover both.
"""

from __future__ import annotations

import posixpath
import re

ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
FILEPATH_ANNOTATION = "org.cncf.model.filepath"
LAYER_RE = re.compile(r"^application/vnd\.cncf\.model\."
                      r"(?P<kind>weight|weight\.config|doc|code|dataset)\.v1\."
                      r"(?P<form>raw|tar|tar\+gzip|tar\+zstd)$")


def is_modelpack(manifest: dict) -> bool:
    """Whether a manifest (parsed) is a ModelPack artifact."""
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    return (manifest.get("artifactType") == ARTIFACT_TYPE
            or config.get("mediaType") == CONFIG_MEDIA_TYPE)


def layer_form(media_type: str) -> str | None:
    """"raw", "tar", "tar+gzip" or "tar+zstd" for a ModelPack layer; None for anything else."""
    match = LAYER_RE.match(media_type)
    return match.group("form") if match else None


def layer_problem(media_type: str, filepath: str) -> str | None:
    """Why the scanner can't take a ModelPack layer, or None."""
    form = layer_form(media_type)
    if form is None:
        return (f"the media type {media_type!r} is not a ModelPack layer type (application/"
                "vnd.cncf.model.<weight|weight.config|doc|code|dataset>.v1.<raw|tar|tar+gzip>)")
    if form == "tar+zstd":
        return ("zstd layers can't be unpacked here: pack the model with tar or tar+gzip "
                "layers")
    if form == "raw" and not filepath:
        return (f"a raw layer ({media_type}) without the {FILEPATH_ANNOTATION} annotation "
                "that names its file")
    return None


def safe_filepath(filepath: str) -> str | None:
    """A raw layer's file path, relative and inside the model's root; None when it would
    write elsewhere (absolute, `..`) or names no file."""
    if not filepath or filepath.startswith("/") or "\\" in filepath:
        return None
    parts = [p for p in filepath.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return posixpath.join(*parts)
