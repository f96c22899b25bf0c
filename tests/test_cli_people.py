"""``nurture contacts import/list/show/export/suppress/unsuppress/set/forget`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nurture.cli import main
from nurture.store import open_store

FIXTURES = Path(__file__).parent / "fixtures" / "contacts"


@pytest.fixture
def env(tmp_path: Path, root: Path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: {tmp_path / 'n.db'}\ncampaigns_dir: {root / 'campaigns'}\n"
                   f"templates_dir: {root / 'templates'}\n"
                   "reps:\n  - {id: aoki, name: Aoki Yui, email: aoki@acme.example, territory: [JP]}\n")
    runner = CliRunner()

    def run(*args: str, code: int = 0, input: str | None = None):
        result = runner.invoke(main, ["--config", str(cfg), *args], env={"COLUMNS": "200"}, input=input)
        assert result.exit_code == code, (result.output, result.exception)
        return result

    run.tmp = tmp_path
    return run


def test_import_prints_the_column_plan_and_dry_run_writes_nothing(env):
    r = env("contacts", "import", str(FIXTURES / "hubspot.csv"), "--dry-run")
    assert "read as UTF-8, comma-separated; 3 rows (3 good, 0 bad)" in r.output
    assert '"Country/Region" → country' in r.output and '"Annual Revenue" → contact.annual_revenue (number)' in r.output
    assert "dry run: 3 rows would be imported" in r.output
    assert "no contacts yet" in env("contacts", "list").output
    r = env("contacts", "import", str(FIXTURES / "eight_sjis.csv"), "--json")
    doc = json.loads(r.output)
    assert doc["encoding"] == "Shift_JIS (CP932)" and doc["new"] == 2 and doc["errors"] == []
    r = env("contacts", "import", str(FIXTURES / "zoho.csv"), "--map", "Mobile=-", "--map", "Designation=title")
    assert '"Mobile" → ignored (--map)' in r.output and "imported 2 new" in r.output
    mapping = env.tmp / "zoho.map"
    mapping.write_text("# our Zoho export\nSalutation=-\nNo such column=company\n")
    r = env("contacts", "import", str(FIXTURES / "zoho.csv"), "--mapping", str(mapping))
    assert '"Salutation" → ignored (--map)' in r.output and "updated 2" in r.output
    r = env("contacts", "import", str(FIXTURES / "zoho.csv"), "--map", "Company", code=1)
    assert 'is not HEADER=FIELD' in r.output


def test_bad_rows_print_as_file_row_field_message(env):
    f = env.tmp / "c.csv"
    f.write_text("email,first_name\na@shop.example,A\n\nnope,B\n")
    r = env("contacts", "import", str(f))
    assert f'{f}:4: email: "nope" is not an email address' in r.output
    assert "imported 1 new, updated 0, skipped 1 bad row" in r.output


def test_list_show_set_suppress_unsuppress(env):
    env("contacts", "import", str(FIXTURES / "hubspot.csv"))
    r = env("contacts", "list", "--where", "territory=JP")
    assert "yui.sato@kumo-tea.example" in r.output and "sam@" not in r.output
    data = json.loads(env("contacts", "list", "--json").output)
    assert [c["email"] for c in data][0] == "yui.sato@kumo-tea.example" and data[0]["owner"] == "aoki"
    r = env("contacts", "show", "YUI.SATO@kumo-tea.example")
    assert "Yui Sato" in r.output and "title: Head of E-commerce" in r.output and "enrollments: none" in r.output
    env("contacts", "set", "yui.sato@kumo-tea.example", "title=CEO", "tier=gold", "seats:=12")
    doc = json.loads(env("contacts", "show", "yui.sato@kumo-tea.example", "--json").output)
    assert doc["title"] == "CEO" and doc["attributes"]["tier"] == "gold" and doc["attributes"]["seats"] == 12
    env("contacts", "set", "yui.sato@kumo-tea.example", "timezone=Mars/Base", code=2)
    env("contacts", "set", "nobody@x.example", "title=x", code=1)
    r = env("contacts", "suppress", "sam@harbor-books.example", "--reason", "asked by phone")
    assert "suppressed sam@harbor-books.example (asked by phone)" in r.output
    assert json.loads(env("contacts", "show", "sam@harbor-books.example", "--json").output)["suppressed"] == \
        "asked by phone"
    assert "already suppressed" in env("contacts", "suppress", "sam@harbor-books.example").output
    assert "no longer suppressed" in env("contacts", "unsuppress", "sam@harbor-books.example").output
    env("contacts", "unsuppress", "sam@harbor-books.example", code=1)
    env("contacts", "suppress", "not-an-address", code=2)


def test_export_round_trips_through_import(env):
    env("contacts", "import", str(FIXTURES / "hubspot.csv"))
    env("contacts", "import", str(FIXTURES / "sansan.csv"))
    out = env.tmp / "export.csv"
    env("contacts", "export", "--out", str(out))
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    before = json.loads(env("contacts", "list", "--json").output)

    other = env.tmp / "other.yaml"
    other.write_text(f"database: {env.tmp / 'other.db'}\n")
    r = CliRunner().invoke(main, ["--config", str(other), "contacts", "import", str(out)])
    assert r.exit_code == 0, r.output
    assert "→ ignored" not in r.output
    r = CliRunner().invoke(main, ["--config", str(other), "contacts", "list", "--json"])
    after = json.loads(r.output)
    # Every field comes back; an attribute another contact had comes back empty (a CSV has no "missing").
    def strip(cs):
        return [{**{k: v for k, v in c.items() if k != "id"},
                 "attributes": {k: v for k, v in c["attributes"].items() if v not in ("", None)}} for c in cs]

    assert strip(after) == strip(before) and len(after) == 5
    yui = next(c for c in after if c["email"] == "yui.sato@kumo-tea.example")
    assert yui["attributes"]["annual_revenue"] == 120_000_000 and yui["territory"] == "JP"
    assert env("contacts", "list", "--csv").output.splitlines()[0].startswith("email,first_name,last_name")


def test_forget_prints_what_it_erased_and_keeps_the_address_suppressed(env):
    env("contacts", "import", str(FIXTURES / "hubspot.csv"))
    r = env("contacts", "forget", "yui.sato@kumo-tea.example", input="n\n", code=1)
    assert "Aborted" in r.output
    r = env("contacts", "forget", "yui.sato@kumo-tea.example", "--yes")
    assert "erased yui.sato@kumo-tea.example" in r.output and "stays suppressed" in r.output
    assert "clicks' IP address and user agent" in r.output
    env("contacts", "show", "yui.sato@kumo-tea.example", code=1)
    assert "yui.sato" not in env("contacts", "list").output
    assert "was erased and is already suppressed" in env("contacts", "suppress", "yui.sato@kumo-tea.example").output
    r = env("contacts", "import", str(FIXTURES / "hubspot.csv"))
    assert "erased on request" in r.output and "updated 2, skipped 1" in r.output
    env("contacts", "forget", "yui.sato@kumo-tea.example", "--yes", code=1)
    store = open_store(str(env.tmp / "n.db"))
    try:
        assert store.get_contact_by_email("yui.sato@kumo-tea.example") is None
    finally:
        store.close()
