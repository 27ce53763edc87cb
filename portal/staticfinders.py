"""Static assets that ship inside Python packages, served by the portal like its own.

plotly.js comes with the `plotly` package: collectstatic copies it from there, so the
dashboards load it from the portal itself — never from a CDN — and it is always the version
the installed package was built with.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage


def _package_dir(module: str, *parts: str) -> Path:
    package = __import__(module)
    return Path(package.__file__).parent.joinpath(*parts)


# static prefix → (directory inside a package, the files served from it)
PACKAGE_ASSETS = {
    "vendor/plotly": (lambda: _package_dir("plotly", "package_data"), ("plotly.min.js",)),
}


class PackageAssetsFinder(BaseFinder):
    def _entries(self):
        for prefix, (directory, names) in PACKAGE_ASSETS.items():
            yield prefix, directory(), names

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        find_all = find_all or kwargs.get("all", False)
        found = []
        for prefix, directory, names in self._entries():
            for name in names:
                if path == f"{prefix}/{name}" and (directory / name).is_file():
                    found.append(str(directory / name))
        return found if find_all else (found[0] if found else [])

    def list(self, ignore_patterns):
        for prefix, directory, names in self._entries():
            storage = FileSystemStorage(location=str(directory))
            storage.prefix = prefix
            for name in names:
                if (directory / name).is_file():
                    yield name, storage
