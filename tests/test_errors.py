"""nurture.errors: the one hard-bounce rule, and how errors print their location."""

from __future__ import annotations

import pytest

from nurture.errors import CampaignError, CsvRowError, SendError, TemplateError, is_hard_bounce


@pytest.mark.parametrize(("code", "enhanced", "bounce"), [
    (550, "5.1.1", True),    # no such user
    (550, "5.1.10", True),   # null MX (RFC 7505)
    (553, None, True),       # mailbox name not allowed, no enhanced code
    (551, None, True),
    (550, None, True),
    (550, "5.7.1", False),   # a policy refusal says 550 too: the enhanced code decides
    (554, "5.7.1", False),
    (552, "5.2.2", False),   # mailbox full: not a bad address
    (552, None, False),
    (554, None, False),
    (450, "4.1.1", False),   # transient replies never bounce
    (450, None, False),
    (451, "5.1.1", False),   # a 4xx reply with a contradicting enhanced code is still transient
    (None, None, False),     # no reply at all (network error, render failure)
    (None, "5.1.1", False),
])
def test_is_hard_bounce(code: int | None, enhanced: str | None, bounce: bool) -> None:
    assert is_hard_bounce(code=code, enhanced=enhanced) is bounce


def test_send_error_uses_the_rule_and_a_transient_error_never_bounces() -> None:
    def err(code: int | None, enhanced: str | None, *, transient: bool) -> SendError:
        return SendError("x", code=code, enhanced=enhanced, recipient="a@b.example", transient=transient)

    assert err(550, "5.1.1", transient=False).hard_bounce
    assert err(553, None, transient=False).hard_bounce
    assert not err(550, "5.7.1", transient=False).hard_bounce
    assert not err(550, "5.1.1", transient=True).hard_bounce
    assert not err(None, None, transient=False).hard_bounce


def test_located_errors_print_file_line_column_and_field() -> None:
    assert str(CampaignError("unknown key", file="a.yaml", line=3, column=5, field="steps[0].wiat")) == \
        "a.yaml:3:5: steps[0].wiat: unknown key"
    assert str(CampaignError("bad", file="a.yaml", column=5)) == "a.yaml: bad"  # a column needs a line
    assert str(CampaignError("bad", field="id")) == "id: bad"
    assert str(TemplateError("undefined 'x'", template="t.html", line=7)) == "t.html:7: undefined 'x'"
    assert str(CsvRowError("not an address", file="c.csv", row=2, field="email")) == \
        "c.csv: row 2: email: not an address"
