"""nurture.csvsafe: no cell nurture writes is evaluated as a formula by a spreadsheet."""

from __future__ import annotations

import csv
import io

import pytest

from nurture import csvsafe


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
                                  "\t=1", "\r=1", "\n=1", "\uff1d1+1"])
def test_formula_starts_are_written_as_text(cell):
    out = io.StringIO()
    csvsafe.writer(out).writerow([cell, "plain", 42, -3.5, None])
    [row] = list(csv.reader(io.StringIO(out.getvalue())))
    assert row == ["'" + cell, "plain", "42", "-3.5", ""]


def test_dict_writer_neutralises_header_and_values_and_keeps_order():
    out = io.StringIO()
    w = csvsafe.dict_writer(out, fieldnames=["Name", "=Evil"], lineterminator="\r\n")
    w.writeheader()
    w.writerows([{"Name": "@ann", "=Evil": "ok"}, {"Name": "Bob"}])
    assert out.getvalue() == "Name,'=Evil\r\n'@ann,ok\r\nBob,\r\n"
    with pytest.raises(ValueError, match="Other"):
        w.writerow({"Other": 1})


def test_an_import_reads_back_what_an_export_quoted():
    for text in ["=1+1", "+81 3 5555 0101", "-x", "@home", "plain", "'quoted already", "'"]:
        assert csvsafe.unescape_cell(str(csvsafe.safe_cell(text))) == text
