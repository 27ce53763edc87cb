"""Template helpers of the catalog: safe Markdown for model cards, status badges, sizes."""

from django import template
from django.utils.safestring import mark_safe
from markdown_it import MarkdownIt

register = template.Library()

# CommonMark with raw HTML off: `<script>` in a model card is shown as text, and markdown-it's
# link validation drops javascript:/vbscript:/data: URLs.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")

_VERSION_BADGES = {
    "uploading": "badge-brand", "quarantined": "badge-warn", "scanning": "badge-brand",
    "rejected": "badge-danger", "awaiting_approval": "badge-warn", "published": "badge-ok",
    "deprecated": "badge-warn", "retired": "",
    "clean": "badge-ok", "suspicious": "badge-warn", "malicious": "badge-danger",
    "active": "badge-ok", "critical": "badge-danger", "high": "badge-danger",
    "medium": "badge-warn", "low": "", "info": "",
}


@register.filter
def markdown(text: str) -> str:
    return mark_safe(_markdown.render(text or ""))  # noqa: S308 — html disabled above


@register.filter
def version_badge(status: str) -> str:
    return _VERSION_BADGES.get(str(status), "")


@register.filter
def filesize(value) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


@register.filter
def percent(progress: dict) -> int:
    done, total = (progress or {}).get("done", 0), (progress or {}).get("total", 0)
    return int(100 * done / total) if total else 0
