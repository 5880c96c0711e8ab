"""How uvicorn runs the service: its limits on connections and headers, and a time limit on headers.

uvicorn bounds the size of a request's headers (h11's ``max_incomplete_event_size``), idle keep-alive
connections (``timeout_keep_alive``) and connections at once (``limit_concurrency``: beyond it, 503),
but not the *time* a client may take to send its headers: a client that sends one header byte every
few seconds holds its connection (and a place under ``limit_concurrency``) for ever, since any data
resets the keep-alive timer. :class:`GuardedH11Protocol` adds that limit: a connection that has not
sent a complete request line and headers within ``header_timeout_s`` of connecting (or of its
previous answer) is closed. Bodies are the app's business (``body_timeout_s``: 408).

The service always runs on h11 (pure Python) rather than httptools, whose header size limit is not
ours to set; at the load measured in ``docs/serving.md`` the cost is small against inference.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from edgeocr.serve.settings import SETTINGS_ENV, ServeSettings

logger = logging.getLogger("edgeocr.serve")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a time limit on request headers (``header_timeout_s``)."""

    header_timeout_s: float = ServeSettings.model_fields["header_timeout_s"].default

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        """Expect a new request's headers within the limit (the cycle now in place must be replaced by then)."""
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._waiting_cycle = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.cycle is not self._waiting_cycle:
            return  # closed already, or a request arrived (its answer re-arms the timer)
        logger.info("closing a connection that sent no complete request headers in %g s", self.header_timeout_s)
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle is not None and self.cycle.response_complete:
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()  # type: ignore[union-attr]
            self._header_timer = None
        super().connection_lost(exc)


def _settings_from_env() -> ServeSettings:
    raw = os.environ.get(SETTINGS_ENV)
    return ServeSettings.model_validate_json(raw) if raw else ServeSettings()


class SettingsH11Protocol(GuardedH11Protocol):
    """The protocol of worker processes (``--workers N``): its header limit from the settings in the environment."""

    header_timeout_s = _settings_from_env().header_timeout_s


def uvicorn_options(settings: ServeSettings, *, workers: int = 1) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run`` that apply ``settings``' connection and header limits."""
    if workers > 1:
        protocol: Any = "edgeocr.serve.protocol:SettingsH11Protocol"  # imported by each worker
    else:
        protocol = type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": settings.header_timeout_s})
    return {
        "http": protocol,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
    }
