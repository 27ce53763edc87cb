"""Write the CRD schemas the tests validate against, from a KServe git checkout.

    python tests/support/crds/refresh.py <kserve git dir> [tag]

Reads each CRD at the tag with `git show` (no work tree needed), keeps the versions the portal
writes — their `openAPIV3Schema` only, without the `description` texts — and writes one JSON
file per CRD here, with the source (project, tag, commit, path, licence) inside.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
# CRD file in KServe's repository → the versions the portal writes.
CRDS = {
    "config/crd/full/serving.kserve.io_inferenceservices.yaml": ["v1beta1"],
    "config/crd/full/llmisvc/serving.kserve.io_llminferenceservices.yaml": ["v1alpha2"],
    "config/crd/full/llmisvc/serving.kserve.io_llminferenceserviceconfigs.yaml": ["v1alpha2"],
}


def _without_descriptions(node):
    if isinstance(node, dict):
        return {key: _without_descriptions(value) for key, value in node.items()
                if not (key == "description" and isinstance(value, str))}
    if isinstance(node, list):
        return [_without_descriptions(item) for item in node]
    return node


def main(gitdir: str, tag: str = "v0.20.0") -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", gitdir, *args], check=True, capture_output=True,
                              text=True).stdout

    commit = git("rev-parse", f"{tag}^{{commit}}").strip()
    for path, wanted in CRDS.items():
        crd = yaml.load(git("show", f"{commit}:{path}"), Loader=getattr(yaml, "CSafeLoader",
                                                                        yaml.SafeLoader))
        spec = crd["spec"]
        versions = [{"name": v["name"], "served": v["served"], "storage": v["storage"],
                     "openAPIV3Schema": _without_descriptions(v["schema"]["openAPIV3Schema"])}
                    for v in spec["versions"] if v["name"] in wanted]
        if [v["name"] for v in versions] != wanted or not all(v["served"] for v in versions):
            raise SystemExit(f"{path} at {tag} does not serve {wanted}")
        out = {
            "source": {"project": "KServe", "repository": "https://github.com/kserve/kserve",
                       "tag": tag, "commit": commit, "path": path, "license": "Apache-2.0",
                       "trimmed": "only the versions listed; description texts removed"},
            "crd": {"name": crd["metadata"]["name"], "group": spec["group"],
                    "kind": spec["names"]["kind"], "plural": spec["names"]["plural"],
                    "scope": spec["scope"],
                    "served_versions": [v["name"] for v in spec["versions"] if v["served"]],
                    "versions": versions},
        }
        target = HERE / f"{crd['metadata']['name']}.json"
        target.write_text(json.dumps(out, separators=(",", ":"), sort_keys=True) + "\n")
        print(f"{target.name}: {path} at {tag} ({commit[:12]})")


if __name__ == "__main__":
    main(*sys.argv[1:])
