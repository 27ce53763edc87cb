"""Report sections are pluggable: each app registers providers for the data it owns.

A provider takes the report's scope and returns a `Section` (figures for report.json,
tables and charts for the PDF, findings that need attention). Apps register theirs in
`AppConfig.ready()`; the report core never imports them, so a new app adds a section
(models and scans, deployments and residency, inference volume, API keys …) without
touching this package. Sections with no provider are simply absent: a report never shows
figures that this installation cannot produce.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from audit.reports.periods import Period


@dataclass(frozen=True)
class ReportScope:
    period: Period
    tenant_id: int | None
    tenant_slug: str
    generated_at: datetime

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    total_rows: int | None = None  # when `rows` is a sample of more

    def __post_init__(self) -> None:
        if self.total_rows is None:
            self.total_rows = len(self.rows)


@dataclass
class Chart:
    title: str
    labels: list[str]
    values: list[float]
    unit: str = ""


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    figures: dict[str, Any] = field(default_factory=dict)  # label → value, for people and JSON
    findings: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    # Evidence files for the bundle (path under evidence/ → content): SBOMs, scan reports.
    # report.json lists their names; the bundle's signed manifest covers their bytes.
    attachments: dict[str, bytes] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["attachments"] = [f"evidence/{name}" for name in sorted(self.attachments)]
        return data


SectionProvider = Callable[[ReportScope], Section]


@dataclass(frozen=True)
class _Registered:
    order: int
    key: str
    provider: SectionProvider


_REGISTRY: dict[str, _Registered] = {}


def register_section(key: str, *, order: int) -> Callable[[SectionProvider], SectionProvider]:
    """Decorator: `@register_section("access_review", order=10)` on a provider function."""

    def decorator(provider: SectionProvider) -> SectionProvider:
        _REGISTRY[key] = _Registered(order, key, provider)
        return provider

    return decorator


def registered_keys() -> list[str]:
    return [r.key for r in sorted(_REGISTRY.values(), key=lambda r: (r.order, r.key))]


def build_sections(scope: ReportScope) -> list[Section]:
    return [_REGISTRY[key].provider(scope) for key in registered_keys()]
