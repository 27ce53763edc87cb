"""`manage.py model_scan` works offline: no database, no registry; exit codes say the verdict."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.modelcar import CLEAN_FILES, build_modelcar_archive, malicious_pickle

ROOT = Path(__file__).resolve().parents[2]


def run(*args, env: dict[str, str] | None = None):
    # A database URL pointing at a closed port: the command must never need it.
    env = {**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:9/none",
           "PORTAL_IGNORE_DOTENV": "1", "DEBUG": "true", "REDIS_URL": "", **(env or {})}
    return subprocess.run([sys.executable, "manage.py", "model_scan", *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_clean_archive_exits_0_with_json(tmp_path):
    result = run(build_modelcar_archive(tmp_path / "clean.tar"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "clean" and report["passes_policy"] is True
    assert {f["path"] for f in report["files"]} == set(CLEAN_FILES)


def test_malicious_archive_exits_1_and_explains(tmp_path):
    path = build_modelcar_archive(tmp_path / "bad.tar",
                                  {**CLEAN_FILES, "evil.pkl": malicious_pickle()})
    result = run(path, "--policy", "pickle_allowed_when_clean")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["verdict"] == "malicious"
    assert any(f["code"] == "dangerous_import" and f["path"] == "evil.pkl"
               for f in report["findings"])


def test_a_directory_refused_by_policy_exits_1(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.")
    result = run(tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["passes_policy"] is False


def test_unreadable_input_exits_2(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar file at all" * 20)
    result = run(junk)
    assert result.returncode == 2 and "model_scan:" in result.stderr
    assert run(tmp_path / "missing.tar").returncode == 2
