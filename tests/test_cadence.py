"""Call cadence: retry entries, the next attempt inside the rep's working hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nurture.cadence import Cadence, check_retry, next_attempt_at, retry_entry
from nurture.models import Rep
from nurture.timeutil import parse_hours

TUE_10 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LONDON = Rep(id="baker", name="Sam", email="b@x", timezone="Europe/London",
             hours=parse_hours("09:00-17:30"))


def test_duration_then_next_day_at_their_time():
    assert next_attempt_at("2h", now=TUE_10, contact_tz="Europe/London", rep=LONDON) == TUE_10 + timedelta(hours=2)
    # next_day 10:00 in Tokyo is Wednesday 01:00 UTC, before the London shift: moved to 09:00 London.
    at = next_attempt_at("next_day 10:00", now=TUE_10, contact_tz="Asia/Tokyo", rep=None)
    assert at == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    at = next_attempt_at("next_day 10:00", now=TUE_10, contact_tz="Asia/Tokyo", rep=LONDON)
    assert at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_late_retry_moves_to_the_next_shift_and_skips_the_weekend():
    fri_16 = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert next_attempt_at("2h", now=fri_16, contact_tz="Europe/London", rep=LONDON) == \
        datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert next_attempt_at("next_day 10:00", now=fri_16, contact_tz="Europe/London", rep=None) == \
        datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_entries_repeat_and_check():
    assert [retry_entry(("2h", "next_day 10:00"), n) for n in (1, 2, 3)] == ["2h", "next_day 10:00", "next_day 10:00"]
    check_retry("90m")
    check_retry("next_day 9:30")
    for bad in ("soon", "next_day 25:00", "0h", "-2h"):
        with pytest.raises(ValueError):
            check_retry(bad)
    c = Cadence(attempts=4, retry=("1h",), unreachable={"step": "webinar"}, timezone="Asia/Tokyo")
    assert Cadence.from_json(c.as_json()) == c
    assert Cadence.from_json(None) == Cadence()
