"""How nurture's two listeners (tracker, reps' app) treat bad and slow clients.

- **Malformed requests** (a bad request line, headers too long or not HTTP at all) are
  answered 400 by aiohttp and logged by :class:`QuietServerLog`: one line per kind of error
  and minute, with how many were seen, never a traceback. Real handler errors keep theirs.
- **Slow clients**: a connection must send a complete request head within ``keepalive``
  seconds of opening (or of its previous response), else it is closed; idle keep-alive
  connections are closed after the same time. Request lines and header fields are capped
  at 8 KiB, 64 headers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("nurture.http")

#: Seconds a connection may take to send a request head, and may stay idle between requests.
KEEPALIVE_SECONDS = 15.0
#: How often one kind of malformed request is logged.
LOG_EVERY = 60.0
LIMITS: dict[str, int] = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 64}


class QuietServerLog:
    """A stand-in for aiohttp's ``aiohttp.server`` logger that rate-limits malformed requests."""

    def __init__(self, name: str, *, every: float = LOG_EVERY, target: logging.Logger = log) -> None:
        self.name = name
        self.every = every
        self.target = target
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (last logged at, seen since)

    def exception(self, msg: str, *args: Any, exc_info: Any = None, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(exc, HttpProcessingError):
            self._malformed(exc, args[0] if args else None)
            return
        self.target.error(f"{self.name}: {msg}", *args, exc_info=exc_info or True, **kw)

    def _malformed(self, exc: HttpProcessingError, peer: object) -> None:
        kind = type(exc).__name__
        now = time.monotonic()
        last, seen = self._kinds.get(kind, (-self.every, 0))
        seen += 1
        if now - last < self.every:
            self._kinds[kind] = (last, seen)
            return
        if len(self._kinds) > 100:  # kinds are few; never grow without bound
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        detail = (getattr(exc, "message", "") or str(exc)).splitlines()[0][:200] if str(exc) else kind
        more = f" ({seen - 1} more like it in the last {self.every:.0f} s)" if seen > 1 else ""
        self.target.warning("%s: malformed HTTP request from %s: %s: %s%s", self.name, peer, kind, detail, more)

    def debug(self, msg: str, *args: Any, exc_info: Any = None, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(exc, HttpProcessingError):
            self._malformed(exc, args[0] if args else None)
            return
        self.target.debug(f"{self.name}: {msg}", *args, **kw)

    def error(self, msg: str, *args: Any, **kw: Any) -> None:
        self.target.error(f"{self.name}: {msg}", *args, **kw)

    def warning(self, msg: str, *args: Any, **kw: Any) -> None:
        self.target.warning(f"{self.name}: {msg}", *args, **kw)

    def info(self, msg: str, *args: Any, **kw: Any) -> None:
        self.target.info(f"{self.name}: {msg}", *args, **kw)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - the logging API
        return self.target.isEnabledFor(level)


def runner_options(name: str, *, keepalive: float = KEEPALIVE_SECONDS) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` (passed to each connection's handler)."""
    return {"keepalive_timeout": keepalive, "logger": QuietServerLog(name), **LIMITS}
