import signal

import pytest
import redis
from django.conf import settings
from django.db.backends.postgresql.operations import DatabaseOperations

from tenants.models import TenantRole
from tests.factories import (
    MembershipFactory,
    TenantFactory,
    UserFactory,
    make_compliance_officer,
    make_msp_admin,
)

pytest_plugins = ["tests.support.gateway_fixtures", "tests.support.browser",
                  "tests.support.registry", "tests.support.workers"]


def pytest_configure(config):
    """A run stopped with SIGTERM or SIGHUP (a CI timeout, a closed terminal) ends like one
    stopped with Ctrl-C: pytest then runs every fixture's teardown, so the servers, workers and
    registries the tests started are stopped instead of left running."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)

# tests/sqlite holds the SQLite code paths; tests/portal/test_sqlite_session.py runs them in a
# session of their own on SQLite.
collect_ignore = [] if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") else ["sqlite"]


@pytest.fixture(scope="session", autouse=True)
def _test_teardown_may_empty_the_audit_table():
    """Transactional tests end by TRUNCATEing every table, which the audit table's triggers
    refuse (as they should in production). For that teardown only, run the flush with
    triggers off (`session_replication_role = replica`, a superuser setting)."""
    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        return original(self, ["SET LOCAL session_replication_role = replica", *sql_list])

    DatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    DatabaseOperations.execute_sql_flush = original


@pytest.fixture(scope="session", autouse=True)
def _force_login_is_a_whole_sign_in():
    """See tests.support.sessions: `force_login` includes the second factor, where one is set up."""
    from tests.support import sessions

    sessions.install()


@pytest.fixture(scope="session", autouse=True)
def _clean_redis_test_db():
    """The suite owns the Redis database named by REDIS_URL: start from empty."""
    if settings.REDIS_URL:
        redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(autouse=True)
def _unspent_rate_limits():
    """Sign-in throttles, allauth's rate limits, cached bearer-token answers (Django's cache)
    and the audit's anonymous-event budgets (audit.limits) live in Redis across tests, and the
    test client is always 127.0.0.1 with the same few accounts: each test starts unspent."""
    if settings.REDIS_URL:
        connection = redis.Redis.from_url(settings.REDIS_URL)
        prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        for pattern in (f"{prefix}:*", "*audit-anonymous:*"):
            for key in connection.scan_iter(match=pattern):
                connection.delete(key)


@pytest.fixture
def tenant(db):
    return TenantFactory(slug="acme", name="Acme Research")


@pytest.fixture
def other_tenant(db):
    return TenantFactory(slug="globex", name="Globex Health")


@pytest.fixture
def msp_admin(db):
    return make_msp_admin(email="msp@example.test")


@pytest.fixture
def compliance_officer(db):
    return make_compliance_officer(email="compliance@example.test")


@pytest.fixture
def tenant_admin(tenant):
    return MembershipFactory(tenant=tenant, role=TenantRole.TENANT_ADMIN,
                             user=UserFactory(email="admin@acme.test")).user


@pytest.fixture
def developer(tenant):
    return MembershipFactory(tenant=tenant, role=TenantRole.DEVELOPER,
                             user=UserFactory(email="dev@acme.test")).user


@pytest.fixture
def viewer(tenant):
    return MembershipFactory(tenant=tenant, role=TenantRole.VIEWER,
                             user=UserFactory(email="viewer@acme.test")).user


@pytest.fixture
def outsider(other_tenant):
    """A tenant admin of another tenant."""
    return MembershipFactory(tenant=other_tenant, role=TenantRole.TENANT_ADMIN,
                             user=UserFactory(email="admin@globex.test")).user


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Production hashing is deliberately slow; the suite creates hundreds of users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
