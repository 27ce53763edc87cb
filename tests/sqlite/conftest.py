"""The code paths `make run`'s default database takes (SQLite), in a pytest session of their
own: tests/portal/test_sqlite_session.py starts it with DATABASE_URL=sqlite://… and a private
Redis. The PostgreSQL session does not collect this folder (tests/conftest.py)."""

import pytest
from django.db import connection


@pytest.fixture(autouse=True)
def _on_sqlite(db):
    assert connection.vendor == "sqlite", (
        "tests/sqlite runs on SQLite: see tests/portal/test_sqlite_session.py")
