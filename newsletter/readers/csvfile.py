"""Subscriber lists as CSV: reading an import file, writing an export.

An import file is UTF-8 text (a byte-order mark is fine) with a header row
naming its columns; ``email`` is required, ``name`` is optional, other columns
are ignored and reported. Commas, semicolons or tabs separate the columns.
A file that cannot be read at all is an `ImportFileError`; a bad row is a
`RowProblem` with its line number, and the good rows are still imported.
An address written with a display name (``Ann Reader <ann@example.org>``, as
mail programs export contacts) is taken as the address, the display name
standing in for an empty name column.
Rows for the same address (in any case or IDNA form) are merged.

An export writes every cell that a spreadsheet would run as a formula (``=``,
``+``, ``-``, ``@``, tab or carriage return first; the address column too, since
``=cmd|'/Ccalc'!A1@example.com`` is a valid address) with a leading apostrophe;
the import removes it again, so an export imports back unchanged.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

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


class ImportStream:
    """An import file read twice, keeping almost nothing in memory.

    `check` reads it once to the end, decoding and splitting it as CSV, and
    raises `ImportFileError` if it cannot be read at all (so that nothing is
    imported from a file that breaks halfway); it returns the number of rows.
    `rows` then yields the good rows one at a time, noting bad ones in
    ``problems`` and duplicates in ``merged``. A duplicate with the name its first
    row lacked is yielded again with ``merge_into`` set, to fill that name in.
    Memory grows only with the addresses seen (to find duplicates): about 100
    bytes a row.
    """

    def __init__(self, source: Path | BinaryIO, *, name: str | None = None) -> None:
        self.source = source
        self.name = name if name is not None else str(source)
        self.problems: list[RowProblem] = []
        self.merged: list[tuple[int, int]] = []
        self.ignored_columns: list[str] = []

    @contextmanager
    def _open(self) -> Iterator[BinaryIO]:
        if not isinstance(self.source, Path):
            self.source.seek(0)
            yield self.source
            return
        try:
            fh = self.source.open("rb")
        except OSError as exc:
            raise ImportFileError(f"{self.source}: cannot read it: {exc.strerror}.") from None
        with fh:
            yield fh

    def _lines(self, fh: BinaryIO) -> Iterator[str]:
        """The file's lines as text (line ends kept, for the CSV reader)."""
        first = True
        for number, raw in enumerate(fh, start=1):
            if first:
                if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    raise ImportFileError(
                        f"{self.name} is UTF-16 text; save it as UTF-8 (in Excel: 'CSV UTF-8') "
                        "and import again."
                    )
                raw = raw.removeprefix(codecs.BOM_UTF8)
                first = False
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImportFileError(
                    f"{self.name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {number}); "
                    "save it as UTF-8 (in Excel: 'CSV UTF-8') and import again."
                ) from None

    def _reader(self, fh: BinaryIO) -> tuple[Any, int, int | None]:
        """A CSV reader past the header, and the email and name columns."""
        lines = self._lines(fh)
        skipped: list[str] = []
        header_line = ""
        for line in lines:
            if line.strip():
                header_line = line
                break
            skipped.append(line)
        if not header_line:
            raise ImportFileError(
                f"{self.name} is empty; its first line must be a header such as: email,name"
            )
        delimiter = (
            max(",;\t", key=header_line.count) if any(d in header_line for d in ",;\t") else ","
        )
        reader = csv.reader(
            itertools.chain(skipped, [header_line], lines), delimiter=delimiter, strict=True
        )
        header: list[str] = []
        while not any(cell.strip() for cell in header):
            header = next(reader)
        keys = [_header_key(cell) for cell in header]
        if not EMAIL_HEADERS & set(keys):
            if any("@" in cell for cell in header):
                raise ImportFileError(
                    f"{self.name}: line {len(skipped) + 1} looks like a subscriber, not a header; "
                    "add a first line that names the columns, such as: email,name"
                )
            found = ", ".join(repr(c.strip()) for c in header if c.strip())
            raise ImportFileError(
                f"{self.name} has no 'email' column in its header (found: {found}); "
                "the first line must name the columns, such as: email,name"
            )
        email_at = next(i for i, k in enumerate(keys) if k in EMAIL_HEADERS)
        name_at = next((i for i, k in enumerate(keys) if k in NAME_HEADERS), None)
        self.ignored_columns = [
            header[i].strip()
            for i in range(len(header))
            if i not in (email_at, name_at) and header[i].strip()
        ]
        return reader, email_at, name_at

    def check(self) -> int:
        """Read the whole file once; the number of non-blank rows. Raises ImportFileError."""
        count = 0
        with self._open() as fh:
            reader, _email_at, _name_at = self._reader(fh)
            try:
                for row in reader:
                    if any(cell.strip() for cell in row):
                        count += 1
            except csv.Error as exc:
                raise self._csv_error(reader, exc) from None
        return count

    def _csv_error(self, reader: Any, exc: csv.Error) -> ImportFileError:
        return ImportFileError(
            f"{self.name}: line {reader.line_num}: not valid CSV ({exc}); "
            "check the quotes on that line."
        )

    def rows(self) -> Iterator[ImportRow]:
        """The good rows, in file order (see the class docstring). Raises ImportFileError."""
        self.problems, self.merged = [], []
        seen: dict[str, int] = {}  # address key -> its first line, negative if it had no name
        with self._open() as fh:
            reader, email_at, name_at = self._reader(fh)
            line = reader.line_num + 1
            try:
                for row in reader:
                    start, line = line, reader.line_num + 1
                    if not any(cell.strip() for cell in row):
                        continue
                    taken = self._take(row, start, email_at, name_at, seen)
                    if taken is not None:
                        yield taken
            except csv.Error as exc:
                raise self._csv_error(reader, exc) from None

    def _take(
        self,
        row: list[str],
        line: int,
        email_at: int,
        name_at: int | None,
        seen: dict[str, int],
    ) -> ImportRow | None:
        raw_email = _uncell(row[email_at]) if email_at < len(row) else ""
        raw_name = _uncell(row[name_at]) if name_at is not None and name_at < len(row) else ""
        if not raw_email.strip():
            self.problems.append(RowProblem(line, "no email address"))
            return None
        raw_email, display = split_display_name(raw_email)
        if not raw_name.strip():
            raw_name = display
        try:
            address = normalize_email(raw_email)
            person = clean_name(raw_name)
        except (InvalidAddressError, InvalidNameError) as exc:
            self.problems.append(RowProblem(line, str(exc)))
            return None
        first = seen.get(address.key)
        if first is not None:
            self.merged.append((line, abs(first)))
            if person and first < 0:
                seen[address.key] = abs(first)
                return ImportRow(line, address, person, merge_into=abs(first))
            return None
        seen[address.key] = line if person else -line
        return ImportRow(line, address, person)


_DISPLAY = re.compile(r"^\s*(.*?)\s*<([^<>]*)>\s*$", re.S)


def split_display_name(value: str) -> tuple[str, str]:
    """'Ann Reader <ann@example.org>' → ('ann@example.org', 'Ann Reader'), as mail programs
    and address books export a contact; a bare address comes back with no name."""
    match = _DISPLAY.match(value)
    if match is None:
        return value, ""
    name = match.group(1).strip()
    if len(name) > 1 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').strip()
    return match.group(2), name


def _header_key(cell: str) -> str:
    return "".join(cell.strip().lower().split()).replace("_", "")


def _uncell(value: str) -> str:
    """Undo the export's formula guard."""
    if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START:
        return value[1:]
    return value


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def write_export(subscribers: Iterable[Subscriber], out: TextIO) -> int:
    """Write subscribers as CSV (header first). Returns how many rows were written."""
    # CRLF ends a row (RFC 4180), which also makes the writer quote a cell holding a bare
    # CR: with "\n" it wrote one unquoted, and a spreadsheet started a new row there
    writer = csv.writer(out, lineterminator="\r\n")
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
