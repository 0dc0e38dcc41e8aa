"""The webhook receiver's durable memory: the outbox of events to deliver, and seen signatures.

Why SQLite in a local folder, not records beside the uploads: the uploads may live on S3, where
"insert this record unless one exists" and "list what is still pending" are neither atomic nor
cheap, while the outbox needs exactly those, in transactions, on every request. One SQLite file
(WAL journal, `synchronous=FULL`: a committed row survives a power cut) gives atomic
insert-if-absent for "one event per (bytes, scenario)", an index for "what is due", and the replay
memory in the same place, all restart-safe. It must be on a local disk (SQLite's locking is not
safe on network file systems); several receiver processes may share it on one machine.

Outbox entry life: `pending` (stored, event not yet acknowledged) → `sent` (the Prefect API
answered 204) → `delivered` (the server holds the event: read back by its id). An entry is never
deleted; its event (id included) is fixed when the upload is accepted, so every re-send is the
same event.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import BaseModel

DATABASE_NAME = "webhook.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    sha256 TEXT NOT NULL,
    scenario TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'delivered')),
    attempts INTEGER NOT NULL DEFAULT 0,
    accepted_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    sent_at REAL,
    delivered_at REAL,
    last_error TEXT,
    PRIMARY KEY (sha256, scenario)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS seen_signatures (
    signature TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_signatures_expiry ON seen_signatures (expires_at);
"""


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"


class Delivery(BaseModel):
    """One outbox entry: the event announcing an upload for one scenario, and its progress."""

    sha256: str
    scenario: str
    event_id: UUID
    event: dict[str, Any]  # the Prefect event as JSON, exactly as it is (re-)sent
    state: DeliveryState
    attempts: int
    accepted_at: float
    next_attempt_at: float
    sent_at: float | None
    delivered_at: float | None
    last_error: str | None


class Backlog(BaseModel):
    """What the delivery loop has not finished: for /healthz."""

    pending: int
    sent: int
    oldest_accepted_at: float | None


_COLUMNS = (
    "sha256, scenario, event_id, event, state, attempts, accepted_at, next_attempt_at, "
    "sent_at, delivered_at, last_error"
)


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery.model_validate({**dict(row), "event": json.loads(row["event"])})


class WebhookState:
    """The SQLite file under the receiver's state folder; every method is one transaction.

    Thread-safe: request handlers call it from Starlette's thread pool and the delivery loop
    from its own; one connection serialised by a lock keeps commits simple and in order.
    """

    def __init__(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.path = Path(folder) / DATABASE_NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a 202 is never answered for a lost row
        self._db.execute("PRAGMA busy_timeout=10000")  # another receiver process on the file
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def check(self) -> None:
        """Raises sqlite3.Error when the file cannot be read."""
        with self._lock:
            self._db.execute("SELECT count(*) FROM outbox").fetchone()

    # ------------------------------------------------------------ the outbox

    def accept(
        self, sha256: str, scenario: str, event_id: UUID, event: dict[str, Any], now: float
    ) -> tuple[Delivery, bool]:
        """Adds the entry unless (sha256, scenario) has one; returns it and whether it is new."""
        with self._transaction() as db:
            added = db.execute(
                "INSERT OR IGNORE INTO outbox (sha256, scenario, event_id, event, state, "
                "accepted_at, next_attempt_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (sha256, scenario, str(event_id), json.dumps(event), now, now),
            ).rowcount
            row = db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE sha256 = ? AND scenario = ?",
                (sha256, scenario),
            ).fetchone()
        return _delivery(row), added == 1

    def for_upload(self, sha256: str) -> list[Delivery]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE sha256 = ? ORDER BY accepted_at", (sha256,)
            ).fetchall()
        return [_delivery(row) for row in rows]

    def in_state(
        self, state: DeliveryState, limit: int, due_by: float | None = None
    ) -> list[Delivery]:
        """Entries in `state`, oldest first; with `due_by`, only those due by then."""
        query = f"SELECT {_COLUMNS} FROM outbox WHERE state = ?"
        parameters: list[Any] = [state.value]
        if due_by is not None:
            query += " AND next_attempt_at <= ?"
            parameters.append(due_by)
        with self._lock:
            rows = self._db.execute(
                query + " ORDER BY accepted_at LIMIT ?", (*parameters, limit)
            ).fetchall()
        return [_delivery(row) for row in rows]

    def next_attempt_at(self) -> float | None:
        """When the earliest pending entry is due (None when nothing is pending)."""
        with self._lock:
            row = self._db.execute(
                "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'"
            ).fetchone()
        return row[0]

    def mark_sent(self, event_ids: Sequence[UUID], now: float) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                "last_error = NULL WHERE event_id = ? AND state = 'pending'",
                [(now, str(event_id)) for event_id in event_ids],
            )

    def mark_delivered(self, event_ids: Sequence[UUID], now: float) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?, last_error = NULL "
                "WHERE event_id = ? AND state != 'delivered'",
                [(now, str(event_id)) for event_id in event_ids],
            )

    def retry_later(self, retries: Sequence[tuple[UUID, float]], error: str) -> None:
        """Back to `pending`, each due at its own time, with the reason the attempt failed."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?, last_error = ?, "
                "attempts = attempts + (state = 'pending') WHERE event_id = ? "
                "AND state != 'delivered'",
                [(due, error, str(event_id)) for event_id, due in retries],
            )

    def retry_all_now(self, now: float) -> int:
        """Makes every pending entry due now (the Prefect API answers again); returns how many."""
        with self._transaction() as db:
            return db.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE state = 'pending' "
                "AND next_attempt_at > ?",
                (now, now),
            ).rowcount

    def backlog(self) -> Backlog:
        with self._lock:
            row = self._db.execute(
                "SELECT sum(state = 'pending'), sum(state = 'sent'), min(accepted_at) "
                "FROM outbox WHERE state != 'delivered'"
            ).fetchone()
        return Backlog(pending=row[0] or 0, sent=row[1] or 0, oldest_accepted_at=row[2])

    # ------------------------------------------------------------ replay memory

    def signature_seen(self, signature: str, now: float) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM seen_signatures WHERE signature = ? AND expires_at >= ?",
                (signature, now),
            ).fetchone()
        return row is not None

    def first_use(self, signature: str, expires_at: float, now: float) -> bool:
        """Records `signature` until `expires_at`; False when it was already recorded (a replay)."""
        with self._transaction() as db:
            db.execute("DELETE FROM seen_signatures WHERE expires_at < ?", (now,))
            added = db.execute(
                "INSERT OR IGNORE INTO seen_signatures (signature, expires_at) VALUES (?, ?)",
                (signature, expires_at),
            ).rowcount
        return added == 1
