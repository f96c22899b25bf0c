"""Store: what a login token that does not log in tells (whose it was)."""

from __future__ import annotations

from nurture.store.base import StoreBase


class LoginsMixin(StoreBase):
    """Looking up a token whatever its state, for the login backoff's per-rep count."""

    def token_rep(self, token_hash: str) -> tuple[str, bool] | None:
        """``(rep_id, revoked)`` of a token ever issued, or None."""
        row = self.query_one(
            "SELECT rep_id, revoked_at FROM rep_tokens WHERE token_hash = ?", (token_hash,))
        return None if row is None else (str(row["rep_id"]), row["revoked_at"] is not None)
