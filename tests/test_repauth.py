"""Reps' logins: tokens are stored only as their hash; manager tokens; unknown reps refused."""

from __future__ import annotations

import pytest
from support import NOW

from nurture.errors import NotFound
from nurture.repauth import MANAGER, hash_token, issue_rep_token


def test_issue_rep_token_stores_only_the_hash(store, settings):
    token = issue_rep_token(store, settings, rep_id="baker", now=NOW)
    assert token.startswith("nrt_") and len(token) > 30
    assert hash_token(token) == hash_token(token) != token
    assert store.rep_for_token(hash_token(token)) == "baker"
    assert store.rep_for_token(token) is None
    assert token not in repr(store.query("SELECT * FROM rep_tokens"))
    assert issue_rep_token(store, settings, rep_id="baker", now=NOW) != token  # a new one each time


def test_manager_token_and_unknown_rep(store, settings):
    token = issue_rep_token(store, settings, rep_id="", now=NOW, manager=True)
    assert store.rep_for_token(hash_token(token)) == MANAGER
    with pytest.raises(NotFound, match='no rep "nobody"'):
        issue_rep_token(store, settings, rep_id="nobody", now=NOW)
