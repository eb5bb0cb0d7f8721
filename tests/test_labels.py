"""Label sheets (gtok.sources.labels): the encodings spreadsheets save them in, and one clear line
for a sheet that cannot be used."""

from __future__ import annotations

import pytest
from conftest import gtok, one_line_error, snapshot

from gtok.errors import GtokError
from gtok.sources.labels import read_barcode_labels, read_label_sheet, read_sheet

TEXT = "barcode\tlabel\nAAAC-1\tB cell\nTTTG-1\tcaf\u00e9\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_sheets_in_the_encodings_spreadsheets_write_are_read(tmp_path, encoding):
    """Excel's 'CSV UTF-8' starts with a byte-order mark, 'Unicode text' is UTF-16; without a mark,
    UTF-16 is told by the zero byte beside each ASCII character."""
    sheet = tmp_path / "labels.tsv"
    sheet.write_bytes(TEXT.replace("\n", "\r\n").encode(encoding))
    assert read_barcode_labels(str(sheet)).labels == {"AAAC-1": "B cell", "TTTG-1": "caf\u00e9"}


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_a_binary_file_given_as_a_sheet_is_told_so_with_or_without_a_utf8_mark(tmp_path, bom):
    """A zero byte was called a binary file's only without the UTF-8 byte-order mark; with it, the
    zero bytes were decoded into the labels."""
    sheet = tmp_path / "labels.tsv"
    sheet.write_bytes(bom + b"barcode\tlabel\nAAAC-1\tB\x00cell\n")
    with pytest.raises(GtokError, match=r"labels.tsv: looks like a binary file, not a text label sheet"):
        read_barcode_labels(str(sheet))


def test_a_latin1_sheet_is_one_line_naming_its_line(tmp_path):
    sheet = tmp_path / "labels.tsv"
    sheet.write_bytes(TEXT.encode("latin-1"))
    with pytest.raises(GtokError, match=r"labels.tsv, line 3: the label sheet is not UTF-8 text \(b'\\xe9'\); save it as UTF-8"):
        read_barcode_labels(str(sheet))


def test_a_damaged_utf16_sheet_is_not_called_not_utf8(tmp_path):
    """A sheet whose byte-order mark says UTF-16 but which holds a lone surrogate (damaged, or cut
    in the middle of a character) was told it is 'not UTF-8 text' and to save it as UTF-8."""
    sheet = tmp_path / "labels.tsv"
    sheet.write_bytes(TEXT.encode("utf-16") + b"\x00\xd8")
    with pytest.raises(GtokError, match=r"^.*labels.tsv, line 4: the label sheet looks like UTF-16 text but is not "
                                        r"valid UTF-16 \(b'\\x00\\xd8': unexpected end of data\); it may be damaged or cut "
                                        r"short: save it again"):
        read_barcode_labels(str(sheet))


def test_a_row_of_more_fields_than_the_header_is_refused_by_line(tmp_path):
    """A tab inside a label would cut it short, its rest dropped in silence."""
    sheet = tmp_path / "labels.tsv"
    sheet.write_text("barcode\tlabel\nAAAC-1\tT cell\nAAAG-1\tB\tcell\n")
    with pytest.raises(GtokError, match=r"labels.tsv, line 3: 1 more field\(s\) than the header's 2 columns \(\['cell'\]\)"):
        read_barcode_labels(str(sheet))


@pytest.mark.parametrize("header, words", [("barcode\tlabel\tlabel", "column 'label' twice (columns 2 and 3)"),
                                           ("path\tlabel\tpath", "column 'path' twice (columns 1 and 3)")])
def test_a_column_named_twice_is_refused(tmp_path, header, words):
    """Of two columns of one name the last was read and the first dropped unsaid: a second 'label'
    relabelled every cell, a second 'path' was named as a missing file."""
    sheet = tmp_path / "labels.tsv"
    sheet.write_text(f"{header}\nAAAC-1\tT\tB\n")
    with pytest.raises(GtokError) as info:
        read_sheet(str(sheet), "label sheet")
    assert str(info.value) == f"{sheet}: the label sheet's header names {words}; rename or remove one of them."


def test_a_header_only_sheet_says_it_has_no_rows(tmp_path):
    sheet = tmp_path / "labels.tsv"
    sheet.write_text("barcode\tlabel\n")
    with pytest.raises(GtokError, match="labels.tsv: the label sheet has a header but no rows"):
        read_barcode_labels(str(sheet))
    sheet.write_text("path\tlabel\n")
    with pytest.raises(GtokError, match="has a header but no rows"):
        read_label_sheet(str(sheet), ["a.bed"])
    sheet.write_text("")
    with pytest.raises(GtokError, match="labels.tsv: the label sheet is empty; it needs a header line"):
        read_barcode_labels(str(sheet))
    sheet.write_text("cell\ttype\nA\tB\n")
    with pytest.raises(GtokError, match=r"needs a 'label' column and a 'sample' \+ 'barcode', 'barcode' or 'name' column "
                                        r"\(its columns: 'cell', 'type'\)"):
        read_barcode_labels(str(sheet))


def test_short_rows_read_as_empty_fields(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("path\tlabel\tsplit\na.bed\n")
    assert read_sheet(str(sheet), "sheet") == (["path", "label", "split"], [{"path": "a.bed", "label": "", "split": ""}])


# -- hostile input (once tests/test_edge_cases.py): one-line errors or correct tokens, nothing touched --


def test_conflicting_label_rows_name_the_sheet_and_both_lines(tmp_path, inputs):
    beds = sorted(inputs.glob("Ex*.bed"))
    sheet = tmp_path / "labels.tsv"
    sheet.write_text(f"path\tlabel\n{beds[0]}\tliver\n{beds[1]}\tlung\n{beds[0]}\tbrain\n{beds[2]}\tlung\n")
    before = snapshot(tmp_path)
    proc = gtok("tokenize", "-q", "-u", inputs / "universe.bed", "-o", tmp_path / "l.gtok", "--labels", sheet, *beds)
    one_line_error(proc, "labels.tsv, lines 2 and 4", "two labels, 'liver' and 'brain'")
    assert snapshot(tmp_path) == before
