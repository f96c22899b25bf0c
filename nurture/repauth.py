"""Reps' logins: token hashing, issuing a rep's (or the manager's) token, the manager's rep id.

Tokens and session ids are stored only as their SHA-256 (the SQL is in
:mod:`nurture.store.tasks`); a manager token is stored under the rep id :data:`MANAGER`, which
sees every queue and may change nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from nurture.config import Settings
from nurture.errors import NotFound
from nurture.store import Store

#: The rep id stored for manager tokens: they see every queue.
MANAGER = "*manager*"


def hash_token(token: str) -> str:
    """Tokens and session ids are stored only as their SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_rep_token(store: Store, settings: Settings, *, rep_id: str, now: datetime,
                    manager: bool = False) -> str:
    """A new login token for ``rep_id`` (or a manager token); only its hash is stored."""
    if manager:
        rep_id = MANAGER
    elif rep_id not in {r.id for r in settings.reps}:
        known = ", ".join(r.id for r in settings.reps) or "none configured"
        raise NotFound(f'no rep "{rep_id}" in the config (reps: {known})')
    token = "nrt_" + secrets.token_urlsafe(24)
    store.add_rep_token(token_hash=hash_token(token), rep_id=rep_id, now=now)
    return token
