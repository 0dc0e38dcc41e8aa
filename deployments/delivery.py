"""Delivering the webhook's outbox to the Prefect API: retried, confirmed, never twice a run.

`emit_event` hands an event to a background worker and forgets it: when the API is down the
event is gone. Here every event is first an outbox row (deployments/webhook_state.py) and a loop
in the receiver sends it with `POST /api/events` (204 = the server took it), then reads it back
by id (`POST /api/events/filter`) before calling it delivered; failures back off exponentially
with jitter, and while a backlog waits the API is probed so a recovered server is fed at once.

Exactly one flow run per upload, with at-least-once sending: every send of an upload's event
carries the same id (fixed at acceptance), and the Prefect server
- stores an event id once (`INSERT … ON CONFLICT DO NOTHING` in its events table), and
- drops an id its triggers service has already evaluated (`event_has_been_seen`, a 30-minute
  memory, prefect/server/events/ordering), so a `DeploymentEventTrigger` fires once;
and the loop never re-sends an event the server already holds: anything sent before (a timeout,
an acknowledgement that was lost, an entry read back too late) is looked up by id first. The
remaining gap is a server that dies within its persister's flush interval (~5 s) after its
triggers acted on an event but before storing it, then restarts and is sent the event again
(docs/webhook.md, "Durability").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from pydantic import BaseModel, Field

from mmflow.deployments.webhook_state import Delivery, DeliveryState, WebhookState
from mmflow.tasks.redaction import redact

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.settings import Settings

logger = logging.getLogger("mmflow.webhook.delivery")
READ_PAGE = 50  # the most events the API's /events/filter returns per page
CONFIRM_LIMIT = 20 * READ_PAGE  # sent entries looked up per round (20 reads of a page)


class DeliveryPolicy(BaseModel):
    """How hard and how often the loop tries (the defaults suit a Prefect server nearby)."""

    retry_initial_s: float = Field(default=1.0, gt=0, description="First back-off")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest back-off")
    confirm_timeout_s: float = Field(
        default=60.0, gt=0, description="A sent event not read back by then is sent again"
    )
    probe_interval_s: float = Field(
        default=5.0, gt=0, description="While a backlog waits, how often to see if Prefect is back"
    )
    batch_size: int = Field(default=50, gt=0, le=READ_PAGE)
    poll_s: float = Field(default=0.5, gt=0, description="Idle wait between rounds")

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after `attempts` failed attempts: exponential, capped, jittered."""
        ceiling = min(self.retry_max_s, self.retry_initial_s * 2 ** max(0, attempts - 1))
        return ceiling * random.uniform(0.5, 1.0)  # jitter, not cryptography


class EventSink(Protocol):
    """Where the loop delivers; each call is one attempt and raises when it did not work."""

    async def send(self, events: Sequence[dict[str, Any]]) -> None: ...

    async def held(self, event_ids: Sequence[UUID], since: datetime) -> set[UUID]: ...

    async def probe(self) -> None: ...

    async def aclose(self) -> None: ...


class DeliveryFailed(Exception):
    """The API answered, but not with an acknowledgement."""

    def __init__(self, what: str, status_code: int) -> None:
        super().__init__(f"{what} answered {status_code}")
        self.status_code = status_code


def failure_kind(error: BaseException) -> str:
    """The kind of a failure without its text, which may name hosts or URLs: for /healthz."""
    response = getattr(error, "response", None)
    code = getattr(error, "status_code", None) or getattr(response, "status_code", None)
    return f"{type(error).__name__} ({code})" if code else type(error).__name__


def _describe(error: BaseException) -> str:
    """The failure's first line for logs and /v1/status, redacted (an API URL may carry a
    password, an error may quote a key)."""
    text = redact(str(error)).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


class PrefectEventSink:
    """The Prefect API's events routes through Prefect's own client (auth, TLS, CSRF handled).

    Prefect's client retries for up to a minute by itself; here each call is one attempt (its
    retries set to 0) so the loop's back-off and the health probe stay in charge and quick.
    """

    def __init__(self, api_url: str, timeout_s: float = 15.0) -> None:
        import prefect.context
        from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES

        self.api_url = api_url
        self._timeout_s = timeout_s
        context = prefect.context.get_settings_context()
        self._profile = context.profile
        self._settings: Settings = context.settings.copy_with_update(
            updates={PREFECT_API_URL: api_url, PREFECT_CLIENT_MAX_RETRIES: 0}
        )
        self._client: PrefectClient | None = None

    @classmethod
    def from_settings(cls) -> PrefectEventSink:
        """The sink for the configured PREFECT_API_URL (refuses to run without one)."""
        from prefect.settings import PREFECT_API_URL

        api_url = PREFECT_API_URL.value()
        if not api_url:  # get_client would start a throwaway server that nothing listens to
            raise ValueError("set PREFECT_API_URL to the Prefect server whose deployments run")
        return cls(str(api_url))

    async def _request(self, method: str, path: str, payload: Any) -> Any:
        import prefect.context
        from prefect.client.orchestration import PrefectClient
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

        with prefect.context.SettingsContext(profile=self._profile, settings=self._settings):
            if self._client is None:  # made in the loop that uses it (httpx binds to it)
                self._client = PrefectClient(
                    self.api_url,
                    api_key=PREFECT_API_KEY.value(),
                    auth_string=PREFECT_API_AUTH_STRING.value(),
                    httpx_settings={"timeout": self._timeout_s},
                )
                await self._client.__aenter__()
            return await self._client.request(method, path, json=payload)  # type: ignore[arg-type]

    async def send(self, events: Sequence[dict[str, Any]]) -> None:
        response = await self._request("POST", "/events", list(events))
        if response.status_code != 204:
            raise DeliveryFailed("POST /events", response.status_code)

    async def held(self, event_ids: Sequence[UUID], since: datetime) -> set[UUID]:
        found: set[UUID] = set()
        window = {
            "since": (since - timedelta(hours=1)).isoformat(),  # room for clock skew
            "until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        }
        for start in range(0, len(event_ids), READ_PAGE):
            page = [str(event_id) for event_id in event_ids[start : start + READ_PAGE]]
            query = {"filter": {"id": {"id": page}, "occurred": window}, "limit": READ_PAGE}
            response = await self._request("POST", "/events/filter", query)
            if response.status_code != 200:
                raise DeliveryFailed("POST /events/filter", response.status_code)
            found.update(UUID(event["id"]) for event in response.json()["events"])
        return found

    async def probe(self) -> None:
        response = await self._request("GET", "/health", None)
        if response.status_code != 200:
            raise DeliveryFailed("GET /health", response.status_code)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.__aexit__(None, None, None)


class DeliveryLoop:
    """Runs in the receiver's event loop for its whole life (started by the app's lifespan)."""

    def __init__(
        self,
        state: WebhookState,
        sink: EventSink,
        policy: DeliveryPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.sink = sink
        self.policy = policy
        self.clock = clock
        self.last_error: str | None = None  # the last failure, in full (logs, /v1/status)
        self.last_failure_kind: str | None = None  # the same without its text (/healthz)
        self._wake = asyncio.Event()
        self._last_probe = 0.0
        self._last_confirm = 0.0

    def _failed(self, error: BaseException) -> None:
        self.last_error, self.last_failure_kind = _describe(error), failure_kind(error)

    def wake(self) -> None:
        """A new entry is waiting: start a round now instead of after the idle wait."""
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            try:
                more = await self.round()
            except Exception as error:  # a broken state file: keep the receiver up, say why
                self._failed(error)
                logger.exception("webhook delivery round failed")
                more = False
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.policy.poll_s)
                self._wake.clear()

    async def round(self) -> bool:
        """One pass: confirm what was sent, send what is due, probe if a backlog waits.

        Returns True when there is more to do at once (a full batch, or Prefect just came back).
        """
        now = self.clock()
        await self._confirm(now)
        sent_full = await self._send_due(now)
        revived = await self._probe_while_waiting(now)
        return sent_full or revived

    async def _state(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(call, *args)  # SQLite commits wait for the disk

    async def _confirm(self, now: float) -> None:
        if now - self._last_confirm < min(1.0, self.policy.poll_s * 2):
            return
        self._last_confirm = now
        sent: list[Delivery] = await self._state(
            self.state.in_state, DeliveryState.SENT, CONFIRM_LIMIT
        )
        if not sent:
            return
        try:
            held = await self.sink.held([d.event_id for d in sent], _earliest(sent))
        except Exception as error:
            self._failed(error)
            return
        await self._state(self.state.mark_delivered, sorted(held), now)
        late = [
            (d.event_id, now)
            for d in sent
            if d.event_id not in held and now - (d.sent_at or now) > self.policy.confirm_timeout_s
        ]
        if late:
            why = (
                f"acknowledged but not held by the server after {self.policy.confirm_timeout_s} "
                "s; sending the same event again"
            )
            logger.warning("webhook delivery: %d events %s", len(late), why)
            await self._state(self.state.retry_later, late, why)

    async def _send_due(self, now: float) -> bool:
        due: list[Delivery] = await self._state(
            self.state.in_state, DeliveryState.PENDING, self.policy.batch_size, now
        )
        if not due:
            return False
        try:
            tried = [d for d in due if d.attempts > 0]  # may have reached the server already
            held = set()
            if tried:
                held = await self.sink.held([d.event_id for d in tried], _earliest(tried))
            if held:
                await self._state(self.state.mark_delivered, sorted(held), now)
            to_send = [d for d in due if d.event_id not in held]
            if to_send:
                await self.sink.send([d.event for d in to_send])
                await self._state(self.state.mark_sent, [d.event_id for d in to_send], now)
        except Exception as error:
            described = _describe(error)
            if described != self.last_error:  # once per kind of failure, not once per retry
                logger.warning("webhook delivery: events wait (%s); retrying", described)
            self._failed(error)
            retries = [(d.event_id, now + self.policy.backoff(d.attempts + 1)) for d in due]
            await self._state(self.state.retry_later, retries, described)
            return False
        if self.last_error is not None:
            logger.warning("webhook delivery: the Prefect API takes events again")
            self.last_error = self.last_failure_kind = None
        return len(due) == self.policy.batch_size

    async def _probe_while_waiting(self, now: float) -> bool:
        """When every pending entry waits out a back-off, see whether Prefect is back."""
        if now - self._last_probe < self.policy.probe_interval_s:
            return False
        next_due = await self._state(self.state.next_attempt_at)
        if next_due is None or next_due <= now:
            return False
        self._last_probe = now
        try:
            await self.sink.probe()
        except Exception as error:
            self._failed(error)
            return False
        return bool(await self._state(self.state.retry_all_now, now))


def _earliest(deliveries: Sequence[Delivery]) -> datetime:
    return datetime.fromtimestamp(min(d.accepted_at for d in deliveries), UTC)
