"""Subscriber lists as CSV: reading an import file, writing an export.

An import file is UTF-8 text (a byte-order mark is fine) with a header row
naming its columns; ``email`` is required, ``name`` is optional, other columns
are ignored and reported. Commas, semicolons or tabs separate the columns.
A file that cannot be read at all is an `ImportFileError`; a bad row is a
`RowProblem` with its line number, and the good rows are still imported.
Rows for the same address (in any case or IDNA form) are merged.

An export writes every cell that a spreadsheet would run as a formula (``=``,
``+``, ``-``, ``@``, tab or carriage return first; the address column too, since
``=cmd|'/Ccalc'!A1@example.com`` is a valid address) with a leading apostrophe;
the import removes it again, so an export imports back unchanged.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from newsletter.core.errors import ImportFileError, InvalidAddressError, InvalidNameError
from newsletter.core.models import Subscriber
from newsletter.readers.addresses import clean_name, normalize_email
from newsletter.readers.subscribers import ImportRow

EMAIL_HEADERS = {"email", "emailaddress", "mail", "e-mail", "e-mailaddress"}
NAME_HEADERS = {"name", "fullname"}
EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "consent_source",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ParsedImport:
    """The good rows of a file, and what was wrong with the others."""

    rows: list[ImportRow] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    merged: list[tuple[int, int]] = field(default_factory=list)  # (line, line it merged into)
    ignored_columns: list[str] = field(default_factory=list)


def read_import_file(path: Path) -> ParsedImport:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read it: {exc.strerror}.") from None
    return parse_import(data, name=str(path))


def _decode(data: bytes, name: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ImportFileError(
            f"{name} is UTF-16 text; save it as UTF-8 (in Excel: 'CSV UTF-8') and import again."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportFileError(
            f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            "save it as UTF-8 (in Excel: 'CSV UTF-8') and import again."
        ) from None


def _header_key(cell: str) -> str:
    return "".join(cell.strip().lower().split()).replace("_", "")


def _uncell(value: str) -> str:
    """Undo the export's formula guard."""
    if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START:
        return value[1:]
    return value


def parse_import(data: bytes, *, name: str = "the file") -> ParsedImport:
    """Read an import file's bytes. Raises ImportFileError if it cannot be read at all."""
    text = _decode(data, name)
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ImportFileError(
            f"{name} is empty; its first line must be a header such as: email,name"
        )
    header_line = lines[first]
    delimiter = max(",;\t", key=header_line.count) if any(d in header_line for d in ",;\t") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    parsed = ParsedImport()
    try:
        header: list[str] = []
        while not any(cell.strip() for cell in header):
            header = next(reader)
        keys = [_header_key(cell) for cell in header]
        if not EMAIL_HEADERS & set(keys):
            if any("@" in cell for cell in header):
                raise ImportFileError(
                    f"{name}: line {first + 1} looks like a subscriber, not a header; "
                    "add a first line that names the columns, such as: email,name"
                )
            found = ", ".join(repr(c.strip()) for c in header if c.strip())
            raise ImportFileError(
                f"{name} has no 'email' column in its header (found: {found}); "
                "the first line must name the columns, such as: email,name"
            )
        email_at = next(i for i, k in enumerate(keys) if k in EMAIL_HEADERS)
        name_at = next((i for i, k in enumerate(keys) if k in NAME_HEADERS), None)
        parsed.ignored_columns = [
            header[i].strip()
            for i in range(len(header))
            if i not in (email_at, name_at) and header[i].strip()
        ]
        seen: dict[str, int] = {}
        by_key: dict[str, int] = {}
        line = reader.line_num + 1
        for row in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            _take(parsed, row, start, email_at, name_at, seen, by_key)
    except csv.Error as exc:
        raise ImportFileError(
            f"{name}: line {reader.line_num}: not valid CSV ({exc}); check the quotes on that line."
        ) from None
    return parsed


def _take(
    parsed: ParsedImport,
    row: list[str],
    line: int,
    email_at: int,
    name_at: int | None,
    seen: dict[str, int],
    by_key: dict[str, int],
) -> None:
    raw_email = _uncell(row[email_at]) if email_at < len(row) else ""
    raw_name = _uncell(row[name_at]) if name_at is not None and name_at < len(row) else ""
    if not raw_email.strip():
        parsed.problems.append(RowProblem(line, "no email address"))
        return
    try:
        address = normalize_email(raw_email)
        person = clean_name(raw_name)
    except (InvalidAddressError, InvalidNameError) as exc:
        parsed.problems.append(RowProblem(line, str(exc)))
        return
    if address.key in seen:
        parsed.merged.append((line, seen[address.key]))
        index = by_key[address.key]
        kept = parsed.rows[index]
        if person and not kept.name:
            parsed.rows[index] = ImportRow(kept.line, kept.address, person)
        return
    seen[address.key] = line
    by_key[address.key] = len(parsed.rows)
    parsed.rows.append(ImportRow(line, address, person))


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def write_export(subscribers: Iterable[Subscriber], out: TextIO) -> int:
    """Write subscribers as CSV (header first). Returns how many rows were written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for sub in subscribers:
        writer.writerow(
            _cell(value)
            for value in [
                sub.email,
                sub.name,
                sub.status,
                sub.consent_source,
                sub.created_at.isoformat(timespec="seconds"),
                sub.confirmed_at.isoformat(timespec="seconds") if sub.confirmed_at else "",
                sub.unsubscribed_at.isoformat(timespec="seconds") if sub.unsubscribed_at else "",
            ]
        )
        count += 1
    return count
