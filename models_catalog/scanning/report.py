"""What a scan found: the file inventory, findings with their reasons, and the verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low", "info")
# Findings at these severities make an image malicious, or merely suspicious.
MALICIOUS_SEVERITIES = frozenset({"critical", "high"})
SUSPICIOUS_SEVERITIES = frozenset({"medium"})


@dataclass(frozen=True)
class Finding:
    path: str
    severity: str
    code: str
    message: str

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    format: str


@dataclass
class ScanReport:
    policy: str
    files: list[FileEntry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    scanner_versions: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    # Small files the caller asked to keep (e.g. tokenizer.json), path → bytes. Not part of
    # the report's JSON.
    kept: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def verdict(self) -> str:
        severities = {f.severity for f in self.findings if f.code != POLICY_CODE}
        if severities & MALICIOUS_SEVERITIES:
            return "malicious"
        if severities & SUSPICIOUS_SEVERITIES:
            return "suspicious"
        return "clean"

    @property
    def passes_policy(self) -> bool:
        return not any(f.code == POLICY_CODE for f in self.findings)

    @property
    def passed(self) -> bool:
        """What the gate asks: clean or merely suspicious (a person then decides), and
        allowed by the platform's policy."""
        return self.verdict != "malicious" and self.passes_policy

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "passes_policy": self.passes_policy, "policy": self.policy,
            "files": [asdict(f) for f in self.files],
            "findings": [asdict(f) for f in self.findings],
            "scanner_versions": dict(self.scanner_versions),
            "started_at": self.started_at, "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanReport:
        return cls(policy=data.get("policy", ""),
                   files=[FileEntry(**f) for f in data.get("files", [])],
                   findings=[Finding(**f) for f in data.get("findings", [])],
                   scanner_versions=dict(data.get("scanner_versions", {})),
                   started_at=data.get("started_at", ""), finished_at=data.get("finished_at", ""))


POLICY_CODE = "policy_forbidden_format"
