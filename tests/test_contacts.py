"""CSV import: validation with row numbers, upserts, attributes, streaming memory."""

from __future__ import annotations

import csv
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest

from nurture.contacts import import_contacts, is_number, parse_rows, valid_email
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
    # Spreadsheet rows: the header is row 1, the blank line is row 4 (and not counted as a contact).
    assert messages == [
        'contacts.csv:3: email: "not-an-email" is not an email address',
        'contacts.csv:6: timezone: "Mars/Base" is not a time zone',
        "contacts.csv:7: email: is empty",
        "contacts.csv:8: has 11 cells but the header has 10",
    ]
    assert [e.row for e in summary.errors] == [3, 6, 7, 8]
    assert summary.plan.blank == 1
    yui = store.get_contact_by_email("yui@kumo.example")
    assert (yui.first_name, yui.company, yui.timezone, yui.owner, yui.territory) == (
        "Yui", "Kumo Tea", "Asia/Tokyo", "aoki", "JP")
    assert yui.attributes == {"similar_company": "Kissa"} and yui.country == "JP"
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
    with pytest.raises(NurtureError, match='no email column'):
        import_contacts(store, write(tmp_path, "name,company\nA,B\n", "bad.csv"), now=now)
    with pytest.raises(NurtureError, match="not found|No such file"):
        import_contacts(store, tmp_path / "missing.csv", now=now)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("email,company\nx@shop.example,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(NurtureError, match=r'latin.csv:2: the file is neither UTF-8 nor Shift_JIS text; .*"CSV UTF-8'):
        import_contacts(store, latin, now=now, display_name="latin.csv")


def test_quoted_fields_with_newlines_count_as_one_row(tmp_path):
    rows = list(parse_rows(iter(['email,notes\n', 'a@b.example,"line one\n', 'line two"\n', 'bad,x\n']),
                           file="f.csv"))
    assert rows[0].attributes == {"notes": "line one\nline two"}
    assert isinstance(rows[1], CsvRowError) and rows[1].row == 3  # row 2 spans two lines


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


def test_a_column_is_a_number_column_only_when_every_cell_is_a_number(store, tmp_path, now):
    p = write(tmp_path, "email,monthly_orders,avg_basket,zip,phone,code,revenue\n"
                        'n@shop.example,4200,12.5,01234,+81 3 1234,12.50,"2,500"\n'
                        "m@shop.example,420,,99999,,n/a,1000\n")
    s = import_contacts(store, p, now=now)
    types = {c.column.target: c.type for c in s.plan.columns if c.column.kind == "attribute"}
    assert types == {"monthly_orders": "number", "avg_basket": "number", "zip": "text", "code": "text",
                     "revenue": "number"}
    n = store.get_contact_by_email("n@shop.example")
    assert dict(n.attributes) == {"monthly_orders": 4200, "avg_basket": 12.5, "zip": "01234", "code": "12.50",
                                  "revenue": 2500}
    m = store.get_contact_by_email("m@shop.example")
    # The same type for every contact: "99999" stays text beside "01234"; an empty number cell is null.
    assert dict(m.attributes) == {"monthly_orders": 420, "avg_basket": None, "zip": "99999", "code": "n/a",
                                  "revenue": 1000}
    assert n.phone == "+81 3 1234"


@pytest.mark.parametrize("text,ok", [
    ("420", True), ("-3.5", True), ("2,500", True), ("1,234,567.25", True), ("0.5", True),
    ("007", False), ("2,50", False), ("1,2345", False), ("1e5", False), ("+81 3", False),
    ("1234567890123456", False), ("", False),
])
def test_is_number(text, ok):
    assert is_number(text) is ok


# -- real export shapes (hand-written fixtures in tests/fixtures/contacts) ------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "contacts"


def _plan(summary) -> dict[str, str]:
    return {c.column.header: c.describe().split(" → ", 1)[1] for c in summary.plan.columns}


def test_hubspot_export_maps_country_region_and_routes_the_japan_lead_to_the_jp_rep(store, now, settings):
    from nurture.contacts import rep_owners
    from nurture.routing import route

    s = import_contacts(store, FIXTURES / "hubspot.csv", now=now, display_name="hubspot.csv",
                        owners=rep_owners(settings.reps))
    assert (s.new, s.skipped) == (3, 0)
    plan = _plan(s)
    assert plan["Country/Region"].startswith("country")
    assert plan["Company Name"] == "company" and plan["Job Title"] == "title"
    assert plan["Annual Revenue"] == "contact.annual_revenue (number)"
    assert plan["Lifecycle Stage"] == "contact.lifecycle_stage (text)"
    yui = store.get_contact_by_email("yui.sato@kumo-tea.example")
    assert (yui.first_name, yui.last_name, yui.company) == ("Yui", "Sato", "Kumo Tea KK")
    assert yui.phone == "+81 3 5555 0101"
    assert (yui.country, yui.territory, yui.title) == ("Japan", "JP", "Head of E-commerce")
    assert yui.owner == "aoki"  # "Contact owner: Aoki Yui" is the rep aoki
    assert yui.attributes["annual_revenue"] == 120_000_000 and yui.attributes["number_of_employees"] == 2500
    liam = store.get_contact_by_email("liam@glacier-gear.example")
    assert liam.attributes["annual_revenue"] is None and liam.territory == "US"
    r = route(contact=yui.__class__(**{**_fields(yui), "owner": None}), reps=settings.reps,
              territories=settings.territories, kind="call_now", due=timedelta(hours=1), assigned_today={},
              last_rep=None, now=now)
    assert r.rep_id == "aoki" and r.reason.startswith("territory JP")
    sam = store.get_contact_by_email("sam@harbor-books.example")
    r = route(contact=sam, reps=settings.reps, territories=settings.territories, kind="call",
              due=timedelta(days=2), assigned_today={}, last_rep=None, now=now)
    assert r.rep_id == "baker"


def _fields(c):
    return {f: getattr(c, f) for f in c.__dataclass_fields__}


@pytest.mark.parametrize("name,email,expect", [
    ("salesforce.csv", "hana.kimura@sakura-cosme.example",
     {"company": "Sakura Cosmetics", "title": "Marketing Director", "department": "Marketing",
      "country": "JP", "territory": "JP", "phone": "03-5555-0202"}),
    ("pipedrive.csv", "emma@wilson-daughters.example",
     {"first_name": "Emma", "last_name": "Wilson", "company": "Wilson & Daughters", "owner": "baker",
      "territory": "US"}),
    ("zoho.csv", "sofia@rossi-calzature.example",
     {"first_name": "Sofia", "title": "Owner", "industry": "Retail", "territory": "IT"}),
    ("sansan.csv", "yui.sato@kumocha.example",
     {"first_name": "結衣", "last_name": "佐藤", "company": "株式会社くも茶舗", "department": "EC事業部",
      "title": "部長", "phone": "03-5555-0606", "country": "日本", "territory": "JP"}),
    ("sansan.csv", "hanako@hana-kobo.example",  # only 氏名 (with an ideographic space): split family-first
     {"first_name": "花子", "last_name": "木村", "company": "有限会社はな工房"}),
    ("eight_sjis.csv", "ichiro@tanaka-ss.example",
     {"first_name": "一郎", "last_name": "田中", "company": "㈱たなか製作所", "phone": "052-555-0909",
      "department": "第一営業部", "title": "主任"}),
])
def test_crm_and_business_card_exports_land_in_the_right_fields(store, now, settings, name, email, expect):
    from nurture.contacts import rep_owners

    s = import_contacts(store, FIXTURES / name, now=now, display_name=name, owners=rep_owners(settings.reps))
    assert s.skipped == 0 and s.new >= 2
    c = store.get_contact_by_email(email)
    assert {k: getattr(c, k) for k in expect} == expect


def test_japanese_exports_report_their_encoding_and_keep_other_columns_for_templates(store, now):
    s = import_contacts(store, FIXTURES / "eight_sjis.csv", now=now, display_name="eight.csv")
    assert s.plan.lines()[0].startswith("eight.csv: read as Shift_JIS (CP932), comma-separated; 2 rows")
    plan = _plan(s)
    assert plan["e-mail"] == "email" and plan["TEL会社"] == "phone" and plan["TEL直通"] == "contact.tel直通 (text)"
    kenji = store.get_contact_by_email("kenji@morishoten.example")
    assert kenji.attributes["住所"] == "大阪府大阪市北区大深町1-1" and kenji.attributes["tel直通"] == "06-5555-0809"
    import jinja2
    rendered = jinja2.Environment().from_string("{{ c.住所 }}").render(c=kenji.as_template_vars())
    assert rendered == "大阪府大阪市北区大深町1-1"
    s = import_contacts(store, FIXTURES / "sansan.csv", now=now, display_name="sansan.csv")
    assert "read as UTF-8 with BOM" in s.plan.lines()[0]


def test_utf16_with_bom_and_an_explicit_encoding(store, tmp_path, now):
    p = tmp_path / "unicode.txt"  # Excel's "Unicode Text": UTF-16 LE with BOM, tab-separated
    p.write_bytes("\ufeffEmail\t会社名\r\nyu@kumo.example\tくも茶舗\r\n".encode("utf-16-le"))
    s = import_contacts(store, p, now=now)
    assert s.new == 1 and s.plan.encoding.label == "UTF-16 with BOM" and s.plan.delimiter == "\t"
    assert store.get_contact_by_email("yu@kumo.example").company == "くも茶舗"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("email,company\nx@shop.example,Café Crème\n".encode("latin-1"))
    s = import_contacts(store, latin, now=now, encoding="latin-1")
    assert s.plan.encoding.label == "iso8859-1" and store.get_contact_by_email("x@shop.example").company == "Café Crème"
    with pytest.raises(NurtureError, match='--encoding: "klingon" is not an encoding'):
        import_contacts(store, latin, now=now, encoding="klingon")
    nobom = tmp_path / "nobom.csv"
    nobom.write_bytes("email\nx@y.example\n".encode("utf-16-le"))
    with pytest.raises(NurtureError, match="UTF-16 without a byte-order mark"):
        import_contacts(store, nobom, now=now)


def test_map_overrides_ignores_and_collisions(store, tmp_path, now):
    from nurture.csvmap import parse_map

    p = write(tmp_path, "Work Mail,Firma,Notes,Internal\nk@shop.example,Kumo,hello,secret\n")
    with pytest.raises(NurtureError, match="no email column .*--map"):
        import_contacts(store, p, now=now)
    s = import_contacts(store, p, now=now, mapping=parse_map(["Work Mail=email", "Firma=company", "Internal=-",
                                                              "Notes=remarks"]))
    k = store.get_contact_by_email("k@shop.example")
    assert k.company == "Kumo" and dict(k.attributes) == {"remarks": "hello"}
    assert _plan(s)["Internal"] == "ignored (--map)"
    with pytest.raises(NurtureError, match='--map names a column "Nope"'):
        import_contacts(store, p, now=now, mapping=parse_map(["Nope=company", "Work Mail=email"]))
    two = write(tmp_path, "Email,E-mail Address\na@b.example,c@d.example\n", "two.csv")
    with pytest.raises(NurtureError, match='columns "Email" and "E-mail Address" both map to email'):
        import_contacts(store, two, now=now)


def test_dry_run_reports_the_plan_and_writes_nothing(store, tmp_path, now):
    seen = []
    s = import_contacts(store, FIXTURES / "hubspot.csv", now=now, dry_run=True, on_plan=seen.append)
    assert s.dry_run and s.plan.good == 3 and store.count_contacts() == 0
    assert seen == [s.plan]
    doc = s.as_json()
    assert doc["rows"] == 3 and doc["encoding"] == "UTF-8"
    assert {"column": 7, "header": "Country/Region", "kind": "field", "target": "country", "via": "alias",
            "type": None, "filled": 0} in doc["columns"]


# -- hostile files ---------------------------------------------------------------------------------

def test_hostile_files_are_clear_errors_never_stored(store, tmp_path, now):
    nul = write(tmp_path, "email,notes\na@b.example,ok\nc@d.example,bad\x00byte\ne@f.example,fine\n", "nul.csv")
    s = import_contacts(store, nul, now=now, display_name="nul.csv")
    assert [str(e) for e in s.errors] == ["nul.csv:3: the row holds a NUL byte (a binary file pasted in?)"]
    assert store.get_contact_by_email("c@d.example") is None and s.new == 2

    big = write(tmp_path, "email,notes\n" + f'a@big.example,"{"x" * (70 * 1024)}"\n' + "ok@big.example,fine\n",
                "big.csv")
    s = import_contacts(store, big, now=now, display_name="big.csv")
    assert [str(e) for e in s.errors] == ["big.csv:2: a cell is longer than 64 KB (a quote not closed?)"]
    assert store.get_contact_by_email("a@big.example") is None
    assert store.get_contact_by_email("ok@big.example") is not None

    wide = write(tmp_path, ",".join(["email", *(f"c{i}" for i in range(501))]) + "\n", "wide.csv")
    with pytest.raises(NurtureError, match="wide.csv:1: the header has 502 columns; at most 500"):
        import_contacts(store, wide, now=now, display_name="wide.csv")

    dup = write(tmp_path, "email,Plan,plan\na@b.example,x,y\n", "dup.csv")
    with pytest.raises(NurtureError, match='dup.csv:1: the column "plan" appears twice \\(columns 2 and 3\\)'):
        import_contacts(store, dup, now=now, display_name="dup.csv")

    before = store.count_contacts()
    open_quote = write(tmp_path, 'email,company\nq1@x.example,"Acme, Inc\nq2@x.example,Beta\nq3@x.example,Gamma\n',
                       "quote.csv")
    with pytest.raises(NurtureError, match=r"quote.csv:2: a quote opened in this row is never closed, so lines "
                                           r"2–4 .*Nothing was imported"):
        import_contacts(store, open_quote, now=now, display_name="quote.csv")
    assert store.count_contacts() == before  # the first pass found it: nothing written

    swallow = write(tmp_path, 'email,company\nq1@x.example,"Acme\nq2@x.example,Beta"\nq3@x.example,Gamma\n',
                    "swallow.csv")
    s = import_contacts(store, swallow, now=now, display_name="swallow.csv")
    assert [e.row for e in s.errors] == [2] and "runs over lines 2–3" in s.errors[0].message
    assert store.get_contact_by_email("q1@x.example") is None and store.get_contact_by_email("q3@x.example")


def test_row_numbers_are_spreadsheet_rows_with_blank_and_multiline_rows(store, tmp_path, now):
    p = write(tmp_path, 'email,notes\n'        # row 1
                        'a@x.example,ok\n'     # row 2
                        '\n'                   # row 3 (blank)
                        'b@x.example,"two\nlines"\n'  # row 4 (one row on two lines)
                        'bad,x\n'              # row 5
                        ',,\n'                 # row 6 (blank cells)
                        'c@x.example,"a"b\n'   # row 7: bad quoting
                        'd@x.example,fine\n', "rows.csv")
    s = import_contacts(store, p, now=now, display_name="rows.csv")
    assert [str(e) for e in s.errors] == [
        'rows.csv:5: email: "bad" is not an email address',
        "rows.csv:7: the quotes in this row do not pair up (',' expected after '\"')",
    ]
    assert (s.rows, s.plan.blank, s.new) == (5, 2, 3)
