from datetime import UTC, datetime, timedelta

import pytest

from nurture.timeutil import Window, format_duration, parse_duration, parse_hours, parse_rate, parse_weekdays, zone


@pytest.mark.parametrize("text,expected", [
    ("0d", timedelta(0)), ("7d", timedelta(days=7)), ("36h", timedelta(hours=36)),
    ("1d 12h", timedelta(days=1, hours=12)), ("90s", timedelta(seconds=90)), ("2w", timedelta(weeks=2)),
    ("0", timedelta(0)), (0, timedelta(0)),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["3 dayz", "", "d", "7", 7, "1x", "1d garbage"])
def test_bad_duration_names_the_value_and_hints(text):
    with pytest.raises(ValueError) as e:
        parse_duration(text)
    assert "not a duration" in str(e.value)


def test_format_duration_round_trips():
    assert format_duration(parse_duration("1d 12h")) == "1d 12h"


def test_rates():
    assert parse_rate("20/s").per_second == 20
    assert parse_rate("1000/h").per_second == pytest.approx(1000 / 3600)
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate("fast")


def test_window_moves_into_business_hours_in_local_time():
    w = Window(parse_weekdays(["mon", "tue", "wed", "thu", "fri"]), parse_hours("09:00-18:00"))
    tokyo = zone("Asia/Tokyo")
    # Saturday 12:00 Tokyo → Monday 09:00 Tokyo
    sat = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert w.next_open(sat, tokyo) == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    # inside the window: unchanged
    tue = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert w.next_open(tue, tokyo) == tue


def test_window_keeps_local_hour_across_dst():
    w = Window(frozenset(range(7)), parse_hours("09:00-17:00"))
    ny = zone("America/New_York")
    # 2026-03-08 is the US spring-forward day; 06:00 local on the 8th → 09:00 EDT = 13:00 UTC
    before = datetime(2026, 3, 8, 11, 0, tzinfo=UTC)  # 07:00 EDT
    assert w.next_open(before, ny) == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)
    # a day earlier (EST): 09:00 EST = 14:00 UTC
    assert w.next_open(datetime(2026, 3, 7, 11, 0, tzinfo=UTC), ny) == datetime(2026, 3, 7, 14, 0, tzinfo=UTC)


def test_bad_zone_and_weekday():
    with pytest.raises(ValueError, match="not a time zone"):
        zone("Mars/Olympus")
    with pytest.raises(ValueError, match="not a weekday"):
        parse_weekdays(["mon", "funday"])


def test_a_time_zone_name_too_long_for_a_file_is_a_value_error():
    # Found by the hostile-CSV property test: tzdata looks the name up as a file path.
    import pytest

    from nurture.timeutil import zone

    with pytest.raises(ValueError, match="is not a time zone"):
        zone("x" * 3000)
