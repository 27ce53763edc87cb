"""Celery beat that runs the schedule in one process only, however many are started.

Every beat process competes for one Redis lock (`SET NX PX`, renewed by its holder every third
of its life). The holder sends the due tasks; the others stand by and take over when the
holder stops renewing (it died, hung or lost Redis), within `BEAT_LEADER_LOCK_SECONDS`. So a
second beat — a rolling update, two replicas by mistake, a node that comes back — never sends
a periodic task twice.

When each entry last ran is kept in Redis too, not in a file beside the process: the process
that takes over continues the schedule where the previous holder left it (a daily report due
during the hand-over still runs once; one that already ran does not run again).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime

import redis
from celery.beat import Scheduler
from django.conf import settings

logger = logging.getLogger(__name__)

LOCK_KEY = "portal:beat:leader"
LAST_RUN_KEY = "portal:beat:last-run"

# Take the lock when free, or renew it when this process holds it; 1 if held afterwards.
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# Release only a lock this process holds.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderScheduler(Scheduler):
    """A `celery.beat.Scheduler` that ticks only while it holds the leader lock."""

    def __init__(self, *args, **kwargs):
        self.lock_seconds = settings.BEAT_LEADER_LOCK_SECONDS
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leader = False
        self._redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5,
                                           socket_connect_timeout=5)
        self._hold = self._redis.register_script(_HOLD)
        self._release = self._redis.register_script(_RELEASE)
        super().__init__(*args, **kwargs)

    @property
    def renew_seconds(self) -> float:
        return self.lock_seconds / 3

    def tick(self, *args, **kwargs) -> float:
        try:
            held = bool(self._hold(keys=[LOCK_KEY],
                                   args=[self.token, int(self.lock_seconds * 1000)]))
        except redis.RedisError as exc:
            # Without Redis no process can prove it is the only one: send nothing.
            logger.warning("beat: cannot reach Redis for the leader lock (%s); standing by.",
                           exc)
            held = False
        if not held:
            if self.leader:
                logger.warning("beat: lost the leader lock; another beat runs the schedule.")
                self.leader = False
            return self.renew_seconds
        if not self.leader:
            self.leader = True
            self._restore_last_runs()
            logger.info("beat: holding the leader lock (%s); running the schedule.", self.token)
        return min(super().tick(*args, **kwargs), self.renew_seconds)

    def reserve(self, entry):
        new_entry = super().reserve(entry)
        try:
            self._redis.hset(LAST_RUN_KEY, entry.name, new_entry.last_run_at.isoformat())
        except redis.RedisError as exc:
            logger.warning("beat: could not record the run of %s (%s).", entry.name, exc)
        return new_entry

    def _restore_last_runs(self) -> None:
        """Continue from the last runs the previous holder recorded."""
        stored = {name.decode(): value.decode()
                  for name, value in self._redis.hgetall(LAST_RUN_KEY).items()}
        for name, entry in self.schedule.items():
            if name in stored:
                entry.last_run_at = datetime.fromisoformat(stored[name])
        self._heap = None  # rebuild the run order from the restored times

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.leader:
                try:
                    self._release(keys=[LOCK_KEY], args=[self.token])
                except redis.RedisError:
                    pass  # the lock expires on its own
                self.leader = False

    @property
    def info(self) -> str:
        return f"    . leader lock -> redis {LOCK_KEY} ({self.lock_seconds} s)"
