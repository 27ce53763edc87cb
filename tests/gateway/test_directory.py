"""The gateway's key cache: requests that miss together share one database lookup, a lookup
that raced a configuration reload is not kept, and a full cache drops its least recently used
entries (unknown prefixes apart from keys)."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway import directory as directory_module
from gateway import services
from gateway.directory import Directory

pytestmark = pytest.mark.django_db(transaction=True)


def run(coroutine):
    """asyncio.run in a thread of its own: a browser test earlier in the session may have left
    Playwright's event loop running in this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def counted_loads(monkeypatch):
    calls = []
    real = directory_module._load_key

    def counting(prefix):
        calls.append(prefix)
        return real(prefix)

    monkeypatch.setattr(directory_module, "_load_key", counting)
    return calls


def test_concurrent_misses_share_one_lookup(tenant, tenant_admin, counted_loads):
    key, _ = services.apikey_create(actor=tenant_admin, tenant=tenant, name="ci")
    cache = Directory(ttl=60)

    async def many():
        return await asyncio.gather(*(cache.key(key.prefix) for _ in range(20)))

    found = run(many())
    assert {info.id for info in found} == {key.pk}
    assert counted_loads == [key.prefix]
    run(cache.key(key.prefix))
    assert len(counted_loads) == 1  # served from the cache now


def test_a_lookup_that_raced_a_reload_is_not_cached(tenant, tenant_admin, counted_loads):
    key, _ = services.apikey_create(actor=tenant_admin, tenant=tenant, name="ci")
    cache = Directory(ttl=60)

    async def race():
        lookup = asyncio.ensure_future(cache.key(key.prefix))
        await asyncio.sleep(0)  # the lookup has started
        cache._generation += 1  # what a reload does when a key was revoked meanwhile
        return await lookup

    assert run(race()).id == key.pk
    run(cache.key(key.prefix))
    assert len(counted_loads) == 2  # the raced result was not kept


def test_a_full_cache_drops_the_least_recently_used_key(tenant, tenant_admin, counted_loads):
    keys = [services.apikey_create(actor=tenant_admin, tenant=tenant, name=f"k{n}")[0]
            for n in range(4)]
    first, second, third, fourth = keys
    cache = Directory(ttl=60, max_keys=3)
    for key in (first, second, third, first, fourth):  # `first` used again: recent
        assert run(cache.key(key.prefix)).id == key.pk
    assert counted_loads == [key.prefix for key in keys]
    for key in (first, third, fourth):  # still cached: a full cache does not flush
        assert run(cache.key(key.prefix)).id == key.pk
    assert len(counted_loads) == 4
    assert run(cache.key(second.prefix)).id == second.pk  # the least recently used went
    assert counted_loads[4:] == [second.prefix]


def test_unknown_prefixes_do_not_push_keys_out(tenant, tenant_admin, counted_loads):
    keys = [services.apikey_create(actor=tenant_admin, tenant=tenant, name=f"k{n}")[0]
            for n in range(3)]
    cache = Directory(ttl=60, max_keys=3)
    for key in keys:
        run(cache.key(key.prefix))
    for number in range(10):
        assert run(cache.key(f"{number:010d}")) is None
    assert run(cache.key(f"{9:010d}")) is None  # negatively cached: no second lookup
    assert len(counted_loads) == 13
    for key in keys:
        assert run(cache.key(key.prefix)).id == key.pk
    assert len(counted_loads) == 13
