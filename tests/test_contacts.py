"""CSV import: validation with row numbers, upserts, attributes, streaming memory."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import pytest

from nurture.contacts import import_contacts, parse_rows, valid_email
from nurture.errors import CsvRowError, NurtureError

HEADER = "email,first_name,last_name,company,industry,phone,timezone,owner,country,similar_company\n"


def write(tmp_path: Path, text: str, name: str = "contacts.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_bad_rows_are_reported_with_their_row_number_and_good_rows_land(store, tmp_path, now):
    p = write(tmp_path, HEADER
              + "yui@kumo.example,Yui,Sato,Kumo Tea,food,+81 3 0000,Asia/Tokyo,aoki,JP,Kissa\n"
              + "not-an-email,A,B,C,D,E,,,,\n"
              + "\n"  # blank lines are not rows
              + "sam@harbor.example,Sam,Jones,Harbor Books,books,,Europe/London,baker,GB,Chapter House\n"
              + "x@mars.example,X,,Mars Inc,,,Mars/Base,,,\n"
              + ",no,email,,,,,,,\n"
              + "too@many.example,a,b,c,d,e,UTC,o,US,s,EXTRA\n"
              + "liam@glacier.example,Liam,,Glacier Gear,outdoor,,,garcia,US,\n")
    summary = import_contacts(store, p, now=now, display_name="contacts.csv")
    assert (summary.rows, summary.new, summary.updated, summary.skipped) == (7, 3, 0, 4)
    messages = [str(e) for e in summary.errors]
    assert messages == [
        'contacts.csv: row 2: email: "not-an-email" is not an email address',
        'contacts.csv: row 4: timezone: "Mars/Base" is not a time zone',
        "contacts.csv: row 5: email: is empty",
        "contacts.csv: row 6: has 11 cells but the header has 10",
    ]
    assert [e.row for e in summary.errors] == [2, 4, 5, 6]
    yui = store.get_contact_by_email("yui@kumo.example")
    assert (yui.first_name, yui.company, yui.timezone, yui.owner, yui.territory) == (
        "Yui", "Kumo Tea", "Asia/Tokyo", "aoki", "JP")
    assert yui.attributes == {"similar_company": "Kissa"}
    assert yui.as_template_vars()["similar_company"] == "Kissa"
    liam = store.get_contact_by_email("liam@glacier.example")
    assert liam.timezone is None and liam.attributes == {"similar_company": ""}
    assert store.count_contacts() == 3


def test_upsert_is_case_insensitive_and_empty_cells_keep_stored_values(store, tmp_path, now):
    first = write(tmp_path, HEADER + "Yui@Kumo.example,Yui,Sato,Kumo Tea,food,,Asia/Tokyo,aoki,JP,Kissa\n", "a.csv")
    second = write(tmp_path, "EMAIL,Company,Plan Tier\nyui@KUMO.example,Kumo Tea Works,gold\n"
                   "new@shop.example,New Shop,silver\nNEW@shop.example,New Shop KK,\n", "b.csv")
    s1 = import_contacts(store, first, now=now)
    s2 = import_contacts(store, second, now=now)
    assert (s1.new, s1.updated) == (1, 0)
    assert (s2.new, s2.updated, s2.skipped) == (1, 2, 0)
    yui = store.get_contact_by_email("YUI@kumo.EXAMPLE")
    assert yui.email == "yui@KUMO.example"
    assert (yui.first_name, yui.company, yui.timezone) == ("Yui", "Kumo Tea Works", "Asia/Tokyo")
    assert yui.attributes == {"similar_company": "Kissa", "plan_tier": "gold"}
    shop = store.get_contact_by_email("new@shop.example")
    assert shop.company == "New Shop KK" and shop.attributes == {"plan_tier": "silver"}
    assert store.count_contacts() == 2


def test_semicolon_files_bom_and_missing_email_column(store, tmp_path, now):
    p = tmp_path / "excel.csv"
    p.write_bytes("\ufeffE-mail;First Name;Time Zone\nana@shop.example;Ana;Europe/Madrid\n".encode())
    s = import_contacts(store, p, now=now)
    assert s.new == 1
    ana = store.get_contact_by_email("ana@shop.example")
    assert (ana.first_name, ana.timezone) == ("Ana", "Europe/Madrid")
    with pytest.raises(NurtureError, match='no "email" column'):
        import_contacts(store, write(tmp_path, "name,company\nA,B\n", "bad.csv"), now=now)
    with pytest.raises(NurtureError, match="not found|No such file"):
        import_contacts(store, tmp_path / "missing.csv", now=now)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("email,company\nx@shop.example,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(NurtureError, match="not UTF-8"):
        import_contacts(store, latin, now=now)


def test_quoted_fields_with_newlines_count_as_one_row(tmp_path):
    rows = list(parse_rows(iter(['email,notes\n', 'a@b.example,"line one\n', 'line two"\n', 'bad,x\n']),
                           file="f.csv"))
    assert rows[0].attributes == {"notes": "line one\nline two"}
    assert isinstance(rows[1], CsvRowError) and rows[1].row == 2


@pytest.mark.parametrize("email,ok", [
    ("a@b.example", True), ("first.last+tag@sub.shop.co.jp", True), ("ユーザー@例え.jp", True),
    ("a@b", False), ("a b@c.example", False), ("@c.example", False), ("a@@c.example", False),
    ("a@c..example", False), ("a@-c.example", False), ("<a@c.example>", False),
])
def test_valid_email(email, ok):
    assert valid_email(email) is ok


@pytest.mark.slow  # tracemalloc makes every allocation slow; this takes ~15 s
@pytest.mark.sqlite_only("tracemalloc makes psycopg's per-row work 10x slower (90 s); the bound is the importer's")
def test_import_streams_in_bounded_memory(store, tmp_path, now):
    """Issue 7's regression guard: importing 200,000 rows must not hold the file in memory."""
    p = tmp_path / "big.csv"
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "company", "timezone", "similar_company"])
        for i in range(200_000):
            w.writerow([f"user{i}@merchant{i % 997}.example", f"Shop {i}", "Asia/Tokyo", "Kissa Roasters"])
    size = p.stat().st_size
    seen: list[int] = []
    tracemalloc.start()
    try:
        summary = import_contacts(store, p, now=now, batch_size=2000, progress=seen.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.new == 200_000 and summary.skipped == 0
    assert store.count_contacts() == 200_000
    assert seen[-1] == size and seen == sorted(seen) and len(seen) >= 100
    # The file is ~10 MB and holding its rows as objects would take well over 100 MB.
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


def test_plain_numbers_in_extra_columns_become_numbers(store, tmp_path, now):
    p = write(tmp_path, "email,monthly_orders,avg_basket,zip,phone,code\n"
                        "n@shop.example,4200,12.5,01234,+81 3 1234,12.50\n")
    import_contacts(store, p, now=now)
    n = store.get_contact_by_email("n@shop.example")
    assert dict(n.attributes) == {"monthly_orders": 4200, "avg_basket": 12.5, "zip": "01234", "code": "12.50"}
    assert n.phone == "+81 3 1234"
