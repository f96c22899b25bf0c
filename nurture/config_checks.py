"""Range checks on config.yaml values, each failing at the key that holds the bad value.

:mod:`nurture.config` checks types; these check what a type check lets through and a later
part would choke on (a port of 70000 accepted, then an OverflowError at send; a CIDR that
``validate`` passed and the tracker refused).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

Fail = Callable[[tuple[str | int, ...], str], NoReturn]


def _listen(fail: Fail, path: tuple[str | int, ...], value: Any) -> None:
    host, sep, port = str(value).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        fail(path, f'"{value}" is not host:port (a port from 0 to 65535)')


def check_values(fail: Fail, *, smtp: Mapping[str, Any], tracking: Mapping[str, Any],
                 reps_app: Mapping[str, Any]) -> None:
    """Fail (through ``fail(path, message)``) on the first value out of its range."""
    port = smtp.get("port")
    if port is not None and not 1 <= port <= 65535:
        fail(("smtp", "port"), f"{port} is not a port (1 to 65535)")
    for key, low in (("timeout", 0.0), ("group_commit_ms", None)):
        section, name = (smtp, "smtp") if key == "timeout" else (tracking, "tracking")
        value = section.get(key)
        if value is None:
            continue
        if not math.isfinite(float(value)) or (low is not None and value <= low) or value < 0 or value > 86_400:
            fail((name, key), f"{value} is out of range")
    for key, top in (("max_connections", 1000), ("max_attempts", 1000)):
        value = smtp.get(key)
        if value is not None and not 1 <= value <= top:
            fail(("smtp", key), f"must be from 1 to {top}, not {value}")
    for section, name in ((tracking, "tracking"), (reps_app, "reps_app")):
        if section.get("listen") is not None:
            _listen(fail, (name, "listen"), section["listen"])
    for i, cidr in enumerate(tracking.get("trusted_proxies") or []):
        try:
            ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            fail(("tracking", "trusted_proxies", i), f'"{cidr}" is not an IP network (CIDR such as 10.0.0.0/8)')
        if not isinstance(cidr, str):
            fail(("tracking", "trusted_proxies", i), f'"{cidr}" must be a string such as "10.0.0.0/8"')
