"""Tenant quotas: image tokens and US dollars per sliding window, checked before a model call.

A run's `Budget` (budget.py) bounds one run; a quota bounds a tenant across every run and every
worker. Each limit has two levels:

- soft: the call goes ahead, the passing is logged and recorded (ledger row, metric, trace);
- hard: the call is refused before anything is sent (`QuotaExceeded`, a `BudgetExceeded`, so
  every caller already falls back to the offline route, exactly as for a spent budget).

Admission works like the budget's: a call holds its pre-flight estimate (an upper bound) in the
window, checked and added in one atomic step, so concurrent calls, in threads or on different
workers, cannot jointly pass a hard limit; after the call the hold is replaced by what was
billed, or dropped if nothing was. Usage older than the window no longer counts.

Two stores: `SqliteQuotaStore` (one machine: a file, `BEGIN IMMEDIATE` serialises processes)
and `RedisQuotaStore` (several workers: one Lua script per admission, run atomically by Redis
with Redis's own clock). Policies come from a TOML file (docs/observability.md):

    [tenants.acme]
    window_s = 3600
    image_tokens_soft = 100000
    image_tokens_hard = 150000
    usd_soft = "5.00"
    usd_hard = "10.00"

    [tenants."*"]          # any tenant not listed
    window_s = 86400
    usd_hard = "50"
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from mmflow.tasks.provider.budget import Budget, Reservation
from mmflow.tasks.provider.errors import BudgetExceeded

logger = logging.getLogger(__name__)

NANO = Decimal("1e9")  # stores count money in integer billionths of a dollar: exact sums
DEFAULT_TENANT = "*"


def to_nano(usd: Decimal) -> int:
    """Dollars as whole billionths, rounded up (a hold never under-counts)."""
    return int((usd * NANO).to_integral_value(rounding=ROUND_CEILING))


def from_nano(nano: int) -> Decimal:
    return Decimal(nano) / NANO


class TenantQuota(BaseModel):
    """One tenant's limits over a sliding window; a limit left out does not apply."""

    window_s: float = Field(3600.0, gt=0, description="Length of the sliding window, seconds.")
    image_tokens_soft: int | None = Field(None, ge=0)
    image_tokens_hard: int | None = Field(None, ge=0)
    usd_soft: Decimal | None = Field(None, ge=0)
    usd_hard: Decimal | None = Field(None, ge=0)


class QuotaPolicy(BaseModel):
    """Every tenant's quota; `"*"` applies to tenants not listed (and to runs with none)."""

    tenants: dict[str, TenantQuota] = Field(default_factory=dict)

    def for_tenant(self, tenant: str | None) -> TenantQuota | None:
        if tenant is not None and tenant in self.tenants:
            return self.tenants[tenant]
        return self.tenants.get(DEFAULT_TENANT)

    @classmethod
    def from_file(cls, path: str | Path) -> QuotaPolicy:
        with open(path, "rb") as handle:
            return cls.model_validate(tomllib.load(handle))


class QuotaExceeded(BudgetExceeded):
    """The tenant's hard limit would be passed: refused before the call; take the offline route."""

    def __init__(self, message: str, *, estimate_usd: Decimal, tenant: str) -> None:
        super().__init__(message, estimate_usd=estimate_usd, remaining_usd=None)
        self.tenant = tenant

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_quota, (self.message, self.estimate_usd, self.tenant))


def _rebuild_quota(message: str, estimate_usd: Decimal, tenant: str) -> QuotaExceeded:
    return QuotaExceeded(message, estimate_usd=estimate_usd, tenant=tenant)


@dataclass(frozen=True)
class Usage:
    """What the window holds for one tenant (holds included)."""

    image_tokens: int
    usd_nano: int


@dataclass(frozen=True)
class Admission:
    """A store's answer: admitted or not, the usage it saw before this call, and the hold id."""

    admitted: bool
    before: Usage
    hold_id: str


class QuotaStore(Protocol):
    """Where usage lives. `admit` checks and holds atomically; the rest adjust a hold."""

    def admit(
        self,
        tenant: str,
        window_s: float,
        image_tokens: int,
        usd_nano: int,
        hard_tokens: int | None,
        hard_nano: int | None,
    ) -> Admission: ...

    def settle(self, tenant: str, hold_id: str, image_tokens: int, usd_nano: int) -> None: ...

    def release(self, tenant: str, hold_id: str) -> None: ...

    def usage(self, tenant: str, window_s: float) -> Usage: ...


def _fits(
    before: Usage, tokens: int, nano: int, hard_tokens: int | None, hard_nano: int | None
) -> bool:
    return (hard_tokens is None or before.image_tokens + tokens <= hard_tokens) and (
        hard_nano is None or before.usd_nano + nano <= hard_nano
    )


class SqliteQuotaStore:
    """Usage rows in a SQLite file: for the processes of one machine.

    `BEGIN IMMEDIATE` takes the database's write lock before the window is summed, so two
    admissions (threads or processes) are serialised: the second sees the first's hold.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS quota_usage (id TEXT PRIMARY KEY, tenant TEXT NOT "
                "NULL, at REAL NOT NULL, image_tokens INTEGER NOT NULL, usd_nano INTEGER NOT NULL)"
            )
            db.execute(
                "CREATE INDEX IF NOT EXISTS quota_usage_tenant_at ON quota_usage(tenant, at)"
            )

    def __getstate__(self) -> dict[str, Any]:  # a connection does not pickle (Dask, Ray)
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def _usage(self, db: sqlite3.Connection, tenant: str, since: float) -> Usage:
        tokens, nano = db.execute(
            "SELECT COALESCE(SUM(image_tokens), 0), COALESCE(SUM(usd_nano), 0) FROM quota_usage "
            "WHERE tenant = ? AND at >= ?",
            (tenant, since),
        ).fetchone()
        return Usage(int(tokens), int(nano))

    def admit(
        self,
        tenant: str,
        window_s: float,
        image_tokens: int,
        usd_nano: int,
        hard_tokens: int | None,
        hard_nano: int | None,
    ) -> Admission:
        db = self._connect()
        now = time.time()
        hold_id = uuid.uuid4().hex
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "DELETE FROM quota_usage WHERE tenant = ? AND at < ?", (tenant, now - window_s)
            )
            before = self._usage(db, tenant, now - window_s)
            admitted = _fits(before, image_tokens, usd_nano, hard_tokens, hard_nano)
            if admitted:
                db.execute(
                    "INSERT INTO quota_usage VALUES (?, ?, ?, ?, ?)",
                    (hold_id, tenant, now, image_tokens, usd_nano),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return Admission(admitted, before, hold_id)

    def settle(self, tenant: str, hold_id: str, image_tokens: int, usd_nano: int) -> None:
        self._connect().execute(
            "UPDATE quota_usage SET image_tokens = ?, usd_nano = ? WHERE id = ?",
            (image_tokens, usd_nano, hold_id),
        )

    def release(self, tenant: str, hold_id: str) -> None:
        self._connect().execute("DELETE FROM quota_usage WHERE id = ?", (hold_id,))

    def usage(self, tenant: str, window_s: float) -> Usage:
        return self._usage(self._connect(), tenant, time.time() - window_s)


# One round trip, atomic in Redis: drop what left the window, sum what is in it, check the hard
# limits, and hold the call's estimate. Redis's clock (TIME), not the workers', orders the window.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window, tokens, nano = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local hard_tokens, hard_nano, id = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - window))
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end
local used_tokens, used_nano = 0, 0
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, member in ipairs(members) do
  local amount = redis.call('HGET', KEYS[2], member)
  if amount then
    local sep = string.find(amount, ':')
    used_tokens = used_tokens + tonumber(string.sub(amount, 1, sep - 1))
    used_nano = used_nano + tonumber(string.sub(amount, sep + 1))
  end
end
local admitted = 1
if hard_tokens >= 0 and used_tokens + tokens > hard_tokens then admitted = 0 end
if hard_nano >= 0 and used_nano + nano > hard_nano then admitted = 0 end
if admitted == 1 then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('HSET', KEYS[2], id, tokens .. ':' .. nano)
  local ttl = math.ceil(window) + 60
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return {admitted, tostring(used_tokens), tostring(used_nano)}
"""

_SETTLE = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
end
return 1
"""


class RedisQuotaStore:
    """Usage in Redis (a sorted set of holds by time, a hash of their amounts per tenant): for
    workers on several machines. Needs the `redis` package (extra `observability`)."""

    def __init__(self, url: str, prefix: str = "mmflow:quota") -> None:
        self.url = url
        self.prefix = prefix
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["prefix"])  # type: ignore[misc]

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url)
            self._admit = self._client.register_script(_ADMIT)
            self._settle = self._client.register_script(_SETTLE)
        return self._client

    def _keys(self, tenant: str) -> list[str]:
        # {tenant} is a hash tag: both keys land on one slot of a Redis cluster
        return [f"{self.prefix}:{{{tenant}}}:holds", f"{self.prefix}:{{{tenant}}}:amounts"]

    def admit(
        self,
        tenant: str,
        window_s: float,
        image_tokens: int,
        usd_nano: int,
        hard_tokens: int | None,
        hard_nano: int | None,
    ) -> Admission:
        self._redis()
        hold_id = uuid.uuid4().hex
        admitted, tokens, nano = self._admit(
            keys=self._keys(tenant),
            args=[
                window_s,
                image_tokens,
                usd_nano,
                -1 if hard_tokens is None else hard_tokens,
                -1 if hard_nano is None else hard_nano,
                hold_id,
            ],
        )
        return Admission(bool(admitted), Usage(int(tokens), int(nano)), hold_id)

    def settle(self, tenant: str, hold_id: str, image_tokens: int, usd_nano: int) -> None:
        self._redis()
        self._settle(keys=self._keys(tenant), args=[hold_id, image_tokens, usd_nano])

    def release(self, tenant: str, hold_id: str) -> None:
        client = self._redis()
        holds, amounts = self._keys(tenant)
        pipe = client.pipeline()
        pipe.zrem(holds, hold_id)
        pipe.hdel(amounts, hold_id)
        pipe.execute()

    def usage(self, tenant: str, window_s: float) -> Usage:
        client = self._redis()
        holds, amounts = self._keys(tenant)
        now = float(client.time()[0])
        members = client.zrangebyscore(holds, now - window_s, "+inf")
        tokens = nano = 0
        for raw in client.hmget(amounts, members) if members else []:
            if raw:
                part_tokens, part_nano = raw.decode().split(":")
                tokens, nano = tokens + int(part_tokens), nano + int(part_nano)
        return Usage(tokens, nano)


def open_store(url: str) -> QuotaStore:
    """`redis://…` (or `rediss://`, `unix://`) for Redis, else a SQLite file path
    (`sqlite:///abs/path` or a plain path)."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisQuotaStore(url)
    return SqliteQuotaStore(url.removeprefix("sqlite:///").removeprefix("sqlite://"))


@dataclass(frozen=True)
class QuotaHold:
    """An admitted call's place in the window, to settle or release; `soft_exceeded` when it
    went past a soft limit (allowed, and recorded)."""

    tenant: str
    hold_id: str
    soft_exceeded: bool


@dataclass
class QuotaGuard:
    """One tenant's quota, as the provider blocks see it: admit before a call, settle after."""

    tenant: str
    quota: TenantQuota
    store: QuotaStore | None
    refusal: str | None = None  # set: every call is refused, for this reason (a broken policy)

    def admit(self, image_tokens: int, usd: Decimal) -> QuotaHold:
        """Hold this call's estimate, or raise `QuotaExceeded` if a hard limit would be passed."""
        if self.refusal is not None or self.store is None:
            raise QuotaExceeded(
                f"tenant {self.tenant!r}: {self.refusal or 'no quota store'}; refused before "
                "the call, take the offline route",
                estimate_usd=usd,
                tenant=self.tenant,
            )
        q = self.quota
        nano = to_nano(usd)
        hard_nano = to_nano(q.usd_hard) if q.usd_hard is not None else None
        answer = self.store.admit(
            self.tenant, q.window_s, image_tokens, nano, q.image_tokens_hard, hard_nano
        )
        before = answer.before
        if not answer.admitted:
            raise QuotaExceeded(
                f"tenant {self.tenant!r} quota: this call (~{image_tokens} image tokens, "
                f"${usd:.6f}) on top of {before.image_tokens} image tokens and "
                f"${from_nano(before.usd_nano):.6f} used in the last {q.window_s:g} s would "
                f"pass the hard limit ({self._limits('hard')}); refused before the call, "
                "take the offline route",
                estimate_usd=usd,
                tenant=self.tenant,
            )
        after_tokens, after_nano = before.image_tokens + image_tokens, before.usd_nano + nano
        soft = (q.image_tokens_soft is not None and after_tokens > q.image_tokens_soft) or (
            q.usd_soft is not None and after_nano > to_nano(q.usd_soft)
        )
        if soft:
            logger.warning(
                "tenant %r passed its soft quota (%s): %d image tokens, $%s in the last %g s",
                self.tenant,
                self._limits("soft"),
                after_tokens,
                from_nano(after_nano),
                q.window_s,
            )
        return QuotaHold(self.tenant, answer.hold_id, soft)

    def settle(self, hold: QuotaHold, image_tokens: int, usd: Decimal) -> None:
        assert self.store is not None  # a hold exists only where a store admitted it
        self.store.settle(hold.tenant, hold.hold_id, image_tokens, to_nano(usd))

    def release(self, hold: QuotaHold) -> None:
        assert self.store is not None
        self.store.release(hold.tenant, hold.hold_id)

    def _limits(self, level: str) -> str:
        tokens = getattr(self.quota, f"image_tokens_{level}")
        usd = getattr(self.quota, f"usd_{level}")
        parts = ([f"{tokens} image tokens"] if tokens is not None else []) + (
            [f"${usd}"] if usd is not None else []
        )
        return " / ".join(parts) or "none"


def guard_for(tenant: str | None, policy: QuotaPolicy, store: QuotaStore) -> QuotaGuard | None:
    """The guard of a run's tenant, or None when no quota applies to it."""
    quota = policy.for_tenant(tenant)
    if quota is None:
        return None
    return QuotaGuard(tenant or DEFAULT_TENANT, quota, store)


@dataclass(frozen=True)
class GuardedHold:
    """One admitted call's hold in the run's budget and in its tenant's quota."""

    reservation: Reservation
    quota: QuotaHold | None
    image_tokens: int


class GuardedBudget:
    """A run's budget and its tenant's quota, held, settled and released together for one
    logical model call (its retries, repair and lower-detail retry included).

    It takes `Budget`'s place in the provider's call policy, so a quota refusal travels the
    same road as a budget refusal (the detail ladder, then the offline route). What it saw is
    kept for the call's ledger row: money settled, and whether a soft limit was passed.
    """

    def __init__(self, budget: Budget, guard: QuotaGuard | None) -> None:
        self.budget = budget
        self.guard = guard
        self.soft_exceeded = False
        self.settled_usd = Decimal("0")

    def reserve(self, amount_usd: Decimal, image_tokens: int = 0) -> GuardedHold:
        reservation = self.budget.reserve(amount_usd)
        if self.guard is None:
            return GuardedHold(reservation, None, image_tokens)
        try:
            hold = self.guard.admit(image_tokens, amount_usd)
        except BaseException:
            self.budget.release(reservation)
            raise
        self.soft_exceeded = self.soft_exceeded or hold.soft_exceeded
        return GuardedHold(reservation, hold, image_tokens)

    def settle(self, held: GuardedHold, actual_usd: Decimal) -> None:
        self.budget.settle(held.reservation, actual_usd)
        self.settled_usd += actual_usd
        if self.guard is not None and held.quota is not None:
            self.guard.settle(held.quota, held.image_tokens, actual_usd)

    def release(self, held: GuardedHold) -> None:
        self.budget.release(held.reservation)
        if self.guard is not None and held.quota is not None:
            self.guard.release(held.quota)

    def remaining_usd(self) -> Decimal | None:
        return self.budget.remaining_usd()
