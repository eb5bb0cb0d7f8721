"""Text files as people save them: ASCII or UTF-8, or the UTF-16 or UTF-32 that spreadsheets and
Windows editors write ('Unicode text'), told by a byte-order mark or the zero bytes of ASCII in
UTF-16. Sheets and barcode lists are decoded from any of these; BED and fragment files, read as
bytes as gtars reads them, are refused in one line naming the encoding and the conversion; a
zero byte in what claims to be UTF-8 is a binary file given where text was meant."""

from __future__ import annotations

import codecs

from gtok.errors import GtokError, magic_kind


def decode_text(raw: bytes, path: str, what: str) -> str:
    """The text of a file that spreadsheets and editors write: UTF-8, or the encoding its
    byte-order mark or zero bytes tell (encoding_of). Undecodable bytes are refused by line, and
    zero bytes in what is not UTF-16 or UTF-32 as a binary file."""
    encoding = encoding_of(raw)
    if encoding.startswith("utf-8"):  # with its byte-order mark (utf-8-sig) or without
        refuse_binary(raw, path, what)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].decode(encoding, "replace").count("\n") + 1  # of characters: a UTF-16 byte may be 0x0a
        bad = raw[exc.start:exc.end]
        if encoding.startswith("utf-8"):
            raise GtokError(f"{path}, line {line}: the {what} is not UTF-8 text ({bad[:1]!r}); save it as UTF-8 "
                            f"({_SAVE_AS_UTF8}).") from None
        form = _form(encoding)
        raise GtokError(f"{path}, line {line}: the {what} looks like {form} text but is not valid {form} ({bad!r}: "
                        f"{exc.reason}); it may be damaged or cut short: save it again, as UTF-8 ({_SAVE_AS_UTF8}).") from None


def refuse_binary(raw: bytes, path: str, what: str) -> None:
    """Refuse bytes of ASCII or UTF-8 text with a zero byte in their first 64 KiB: no text file
    holds one, so it is a binary file given where text was meant (a shard, an index, a BAM)."""
    if b"\x00" in raw[:65536]:
        kind = magic_kind(raw)
        raise GtokError(f"{path}: is {kind}, not a text {what}." if kind else f"{path}: looks like a binary file, not a text {what}.")


def refuse_unless_utf8(raw: bytes, path: str, what: str) -> None:
    """Refuse the start of a file that must be ASCII or UTF-8 (BED, fragments: read as bytes, as
    gtars reads them) but is UTF-16 or UTF-32, Windows' 'Unicode' text, told by its byte-order mark
    or its zero bytes: named so, with the command that converts it, not as bad lines or a binary
    file; any other zero byte is a binary file's."""
    encoding = encoding_of(raw)
    if encoding.startswith(("utf-16", "utf-32")):
        form = _form(encoding)
        iconv = f"iconv -f {form} -t UTF-8"
        command = f"zcat IN | {iconv} | gzip > OUT" if _gzipped(path) else f"{iconv} IN > OUT"
        raise GtokError(f"{path}: is {form} text, but a {what} must be ASCII or UTF-8 text; convert it first, e.g. "
                        f"with  {command}.")
    refuse_binary(raw, path, what)


_SAVE_AS_UTF8 = "Excel: 'CSV UTF-8'; LibreOffice: character set Unicode (UTF-8)"

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def encoding_of(raw: bytes) -> str:
    """The encoding a byte-order mark, or the zero bytes of ASCII text in UTF-32 or UTF-16, tell;
    else UTF-8."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return encoding
    head = raw[:512]
    for width, at, encoding in _ZERO_BYTES:
        if head and len(raw) % width == 0 and all(bool(byte) == (i % width == at) for i, byte in enumerate(head)):
            return encoding
    return "utf-8"


#: (code unit width, the one byte of each unit that is not zero in ASCII text, the encoding)
_ZERO_BYTES = ((4, 0, "utf-32-le"), (4, 3, "utf-32-be"), (2, 0, "utf-16-le"), (2, 1, "utf-16-be"))


def _gzipped(path: str) -> bool:
    """Whether the file is gzip (its magic number), for a conversion command that reads it."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _form(encoding: str) -> str:
    """An encoding as iconv names it: 'utf-16' (told by its mark) is UTF-16, 'utf-16-le' UTF-16LE."""
    return encoding.upper().replace("-LE", "LE").replace("-BE", "BE")
