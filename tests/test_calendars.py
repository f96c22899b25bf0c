"""Business calendars: public holidays, closures, and working time in send windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from nurture.calendars import (
    BusinessCalendar,
    Closure,
    calendar_for,
    check_country,
    country_of_zone,
    parse_closure,
    parse_closures,
)
from nurture.timeutil import Window, parse_hours, parse_weekdays, zone

TOKYO = zone("Asia/Tokyo")
WEEKDAYS = Window(days=parse_weekdays(["mon", "tue", "wed", "thu", "fri"]), hours=parse_hours("09:00-18:00"))


def test_country_from_the_time_zone() -> None:
    assert country_of_zone("Asia/Tokyo") == "JP"
    assert country_of_zone("America/New_York") == "US"
    assert country_of_zone("UTC") is None
    assert country_of_zone(None) is None


def test_coming_of_age_day_is_closed_in_japan_only() -> None:
    jp = calendar_for(None, zone_name="Asia/Tokyo")
    assert jp.closed(date(2027, 1, 11)) == "Coming of Age Day (JP)"
    assert calendar_for("US").closed(date(2027, 1, 11)) is None
    assert calendar_for("none", zone_name="Asia/Tokyo").closed(date(2027, 1, 11)) is None


def test_closures_parse_and_close_every_day_of_the_range() -> None:
    c = parse_closures(["2026-12-29..2027-01-03", date(2027, 8, 13), "2027-05-01"])
    assert c[0] == Closure(date(2026, 12, 29), date(2027, 1, 3))
    assert c[1] == Closure(date(2027, 8, 13), date(2027, 8, 13))
    cal = BusinessCalendar(None, c)
    assert cal.closed(date(2027, 1, 1)) == "closure 2026-12-29..2027-01-03"
    assert cal.closed(date(2027, 1, 4)) is None
    for bad in ("2027-01-03..2026-12-29", "2027-02-30", "next week"):
        with pytest.raises(ValueError):
            parse_closure(bad)


def test_check_country() -> None:
    assert check_country("jp") == "JP"
    with pytest.raises(ValueError, match="holiday calendar"):
        check_country("XX")


def test_a_send_due_on_coming_of_age_day_moves_to_the_next_working_day() -> None:
    due = datetime(2027, 1, 11, 0, 30, tzinfo=UTC)  # Monday 09:30 in Tokyo, 成人の日
    jp = calendar_for(None, zone_name="Asia/Tokyo")
    assert WEEKDAYS.next_open(due, TOKYO) == due
    opens = WEEKDAYS.next_open(due, TOKYO, jp)
    assert opens.astimezone(TOKYO) == datetime(2027, 1, 12, 9, 0, tzinfo=TOKYO)


def test_the_year_end_closure_skips_to_the_first_open_weekday() -> None:
    cal = calendar_for("JP", closures=parse_closures(["2026-12-29..2027-01-03"]))
    opens = WEEKDAYS.next_open(datetime(2026, 12, 28, 10, 0, tzinfo=UTC), TOKYO, cal)
    assert opens.astimezone(TOKYO).date() == date(2027, 1, 4)


def test_working_time_skips_nights_weekends_and_holidays() -> None:
    jp = calendar_for("JP")
    friday_1730 = datetime(2027, 1, 8, 17, 30, tzinfo=TOKYO)
    one_hour = WEEKDAYS.add_open(friday_1730, timedelta(hours=1), TOKYO, jp)
    assert one_hour.astimezone(TOKYO) == datetime(2027, 1, 12, 9, 30, tzinfo=TOKYO)
    two_days = WEEKDAYS.add_open(friday_1730, timedelta(days=2), TOKYO, jp)
    assert two_days.astimezone(TOKYO) == datetime(2027, 1, 13, 17, 30, tzinfo=TOKYO)
    assert WEEKDAYS.add_open(friday_1730, timedelta(0), TOKYO, jp) == friday_1730


def test_next_working_day() -> None:
    jp = calendar_for("JP")
    assert jp.next_working_day(date(2027, 1, 8), frozenset(range(5))) == date(2027, 1, 12)
    assert jp.next_working_day(date(2027, 1, 12), frozenset(range(5)), after=False) == date(2027, 1, 12)
