"""Streaming reader and writer of pydal's CSV format (plus our annotations).

The format is `db.export_to_csv_file`'s: for each table a line `TABLE name`,
a header of `table.field` names, the rows, a blank line; the file ends with
`END`.  Our exports add columns named `table.field@uuid` that carry the uuid
of each referenced record; pydal's importer ignores columns that are not
fields, so the files stay readable by `db.import_from_csv_file`.  What the
cells and columns mean is the file's vocabulary, in fileformat.py.

The reader yields sections one at a time and rows one at a time, with the
line number of each row, so that memory does not grow with the file and every
error can say where it happened.
"""
import csv
import gzip
import io
import zipfile
import zlib

from .errors import FormatError, TooLarge, TruncatedFile
from .fileformat import END
from .limits import Counted, Inflated, bounded_lines, limits_of

GZIP_MAGIC = b"\x1f\x8b"
ROWS_CHUNK = 500  # rows() reads this many ahead at most

csv.field_size_limit(2**31 - 1)


def text_stream(source, limits=None):
    """A text stream over `source` (path, bytes, binary or text stream), un-gzipped if needed.

    A gzip is inflated through limits.Inflated: bounded in size and ratio.
    """
    if isinstance(source, str):
        source = open(source, "rb")
    elif isinstance(source, bytes):
        source = io.BytesIO(source)
    if isinstance(source, io.TextIOBase):
        return source
    raw = source if hasattr(source, "peek") else io.BufferedReader(_Readable(source))
    if raw.peek(2)[:2] == GZIP_MAGIC:
        limits = limits_of(limits)
        compressed = Counted(raw, float("inf"), None)
        gz = gzip.GzipFile(fileobj=io.BufferedReader(compressed))
        raw = io.BufferedReader(Inflated(gz, compressed, limits))
    # utf-8-sig: a byte-order mark at the start (spreadsheets write one) is read as nothing
    # surrogateescape: a byte that is not UTF-8 is refused by _checked() on its own line, not where
    # the decoder happened to read ahead
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _checked(lines):
    """The lines of a text stream, refusing a NUL character (PostgreSQL cannot store one in text)
    and bytes that are not UTF-8 (read as lone surrogates)."""
    for line in lines:
        if "\x00" in line:
            raise _BadLine(line, "a NUL character (byte 0) in the text: not allowed in a text value", "\x00")
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as e:
                bad = line[e.start:e.end]
                raise _BadLine(line, "file is not UTF-8 text (byte %s)" % " ".join(
                    "0x%02x" % (ord(c) - 0xDC00) for c in bad[:4]), bad)
        yield line


class _BadLine(Exception):
    """A line holding something no cell may (turned into a FormatError where the line number is known)."""

    def __init__(self, line, message, bad):
        self.text, self.message, self.bad = line, message, bad


def _damaged(e, reader, section=None):
    """The FormatError for an exception raised while reading the stream (None: not a reading error)."""
    table = section.tablename if section is not None else None
    line = reader.csv.line_num
    if isinstance(e, TooLarge):
        e.table, e.line = e.table or table, e.line or line + 1
        return e
    if isinstance(e, _BadLine):
        column = None
        if section is not None:
            try:
                cells = next(csv.reader([e.text]))
                column = next((c for c, cell in zip(section.columns, cells) if e.bad in cell), None)
            except (csv.Error, StopIteration):
                pass
        return FormatError(e.message, table=table, line=line + 1, column=column)
    if isinstance(e, UnicodeDecodeError):
        return FormatError("file is not UTF-8 text (%s)" % e.reason, table=table, line=line + 1)
    if isinstance(e, csv.Error):
        if "field larger than field limit" in str(e):
            return reader.limits.too_large("a cell", reader.limits.max_cell_size, "max_cell_size", table=table, line=line + 1)
        return FormatError("malformed CSV: %s" % e, table=table, line=line)
    if isinstance(e, (EOFError, gzip.BadGzipFile)) or (isinstance(e, OSError) and not isinstance(e, FileNotFoundError)):
        return TruncatedFile("file is cut short or damaged: %s" % (e or type(e).__name__), table=table, line=line)
    if isinstance(e, (zlib.error, zipfile.BadZipFile)):
        return FormatError("compressed data is damaged: %s" % e, table=table, line=line)
    return None


class _Readable(io.RawIOBase):
    """Adapts any object with read() (e.g. cgi's FieldStorage file) to a raw stream."""

    def __init__(self, f):
        self.f = f

    def readable(self):
        return True

    def readinto(self, b):
        data = self.f.read(len(b))
        b[: len(data)] = data
        return len(data)


class Section:
    """One `TABLE name` block: its columns and, lazily, its rows with their line numbers."""

    def __init__(self, reader, tablename, columns, line, header=()):
        self.reader, self.tablename, self.columns, self.line = reader, tablename, columns, line
        self.header = header  # the header's cells as written (`table.field`)
        self.done = False

    def check_header(self):
        """Refuse, with the header's line and the column, a header whose meaning is unclear (asked by
        whoever reads the section's rows; a table that is skipped may say what it likes): a column
        prefixed with another table's name (pydal's reader would take `org_organisation.name` as the
        name of any table), and a column named twice (the second would silently win)."""
        seen, line = set(), self.line + 1
        for cell, name in zip(self.header, self.columns):
            prefix, dot, _ = cell.partition(".")
            if dot and prefix != self.tablename:
                raise FormatError("column %r names table %r, not %r" % (cell[:80], prefix[:80], self.tablename),
                                  table=self.tablename, line=line, column=cell[:80])
            if name in seen:
                raise FormatError("column %r appears twice in the header: which value counts is unclear"
                                  % name[:80], table=self.tablename, line=line, column=name[:80])
            seen.add(name)

    def rows(self):
        """Yield (line number, list of cells) until the blank line that ends the table: chunks(), row by row.

        The line number is where the row starts (a quoted cell may span lines).
        The rows before an error are yielded before it is raised, as they come.
        """
        try:
            for chunk in self.chunks(ROWS_CHUNK):
                yield from chunk
        except (FormatError, TooLarge) as e:
            partial, e.partial = getattr(e, "partial", ()), ()
            yield from partial
            raise

    def chunks(self, size):
        """The rows in lists of up to `size` (line, cells): little Python per row.

        A row whose cell count is not the header's is a FormatError, a file
        ending inside the table a TruncatedFile; either carries the rows of
        the chunk read before it, as `partial`: an error among them comes
        first in the file.
        """
        if self.done:
            return
        reader, width = self.reader, len(self.columns)
        csvr = reader.csv
        chunk = []
        append = chunk.append
        start = csvr.line_num + 1
        try:
            for row in csvr:
                if len(row) != width or width == 1:  # the common case passes this one test
                    if not row or (len(row) == 1 and not row[0].strip()):
                        break
                    if len(row) != width:
                        e = FormatError("row has %d cells, the header has %d" % (len(row), width),
                                        table=self.tablename, line=start)
                        e.partial = chunk
                        raise e
                append((start, row))
                start = csvr.line_num + 1
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
                    append = chunk.append
            else:
                e = TruncatedFile("file ends inside a table: truncated (no END)", table=self.tablename,
                                  line=csvr.line_num)
                e.partial = chunk
                raise e
        except (FormatError, TruncatedFile):
            raise
        except Exception as e:
            damaged = _damaged(e, reader, self)
            if damaged is None:
                raise
            damaged.partial = chunk
            raise damaged from None
        self.done = True
        if chunk:
            yield chunk


class Reader:
    """Iterates the sections of a pydal CSV file; raises TruncatedFile if END is missing."""

    def __init__(self, source, limits=None):
        self.limits = limits_of(limits)
        try:
            self.stream = text_stream(source, self.limits)  # peeks: a damaged compressed stream may fail already
        except Exception as e:
            self.csv = csv.reader([])
            damaged = _damaged(e, self)
            if damaged is None:
                raise
            raise damaged from None
        self.csv = csv.reader(_checked(bounded_lines(self.stream, self.limits)))
        csv.field_size_limit(self.limits.max_cell_size)  # process-wide; the same setting for every import
        self.ended = False

    def __iter__(self):
        section = None
        try:
            while True:
                if section is not None and not section.done:
                    for _ in section.rows():  # the caller skipped it
                        pass
                row = self._next_nonblank()
                if row is None:
                    raise TruncatedFile("file ends without END: truncated", line=self.csv.line_num)
                first = row[0].strip()
                if len(row) == 1 and first == END:
                    self.ended = True
                    return
                if len(row) != 1 or not first.startswith("TABLE "):
                    raise FormatError("expected 'TABLE <name>' or 'END', found %r" % ",".join(row)[:80],
                                      line=self.csv.line_num)
                tablename, line = first[6:].strip(), self.csv.line_num
                header = next(self.csv, None)
                if header is None:
                    raise TruncatedFile("file ends after 'TABLE %s': truncated" % tablename, line=line)
                columns = [c.split(".", 1)[-1] for c in header]
                section = Section(self, tablename, columns, line, header)
                if not header:  # pydal writes an empty table as TABLE, blank line, blank line
                    section.done = True
                yield section
        except (FormatError, TruncatedFile):
            raise
        except Exception as e:  # undecodable text, bad CSV, a gzip or zip stream cut short or damaged
            damaged = _damaged(e, self, section if section is not None and not section.done else None)
            if damaged is None:
                raise
            raise damaged from None

    def _next_nonblank(self):
        for row in self.csv:
            if row and any(cell.strip() for cell in row):
                return row
        return None


class Writer:
    """Writes pydal's CSV format: begin_table(), writerows(), end_table(), close() writes END."""

    def __init__(self, stream):
        self.stream = stream
        self.csv = csv.writer(stream)

    def begin_table(self, tablename, columns):
        self.stream.write("TABLE %s\r\n" % tablename)
        self.csv.writerow(["%s.%s" % (tablename, c) for c in columns])

    def writerows(self, rows):
        """csv.writer's output, faster: a row that needs no quoting is joined as it is.

        A row needs quoting when a cell holds a comma, a quote or a line break
        (csv's QUOTE_MINIMAL); such rows (and rows holding None, or fewer than
        two cells) go through csv.writer itself.  The batch
        is written in one call (csv.writer calls the stream once per row).
        """
        lines = []
        for row in rows:
            line = ",".join(map(str, row))
            if (line.count(",") != len(row) - 1 or '"' in line or "\n" in line or "\r" in line or len(row) < 2
                    or None in row):  # csv writes None as an empty cell
                line = self._quoted(row)
            lines.append(line)
        if lines:
            lines.append("")
            self.stream.write("\r\n".join(lines))

    def writelines(self, lines):
        """Lines made already (csv.writer's, without their line ends: the export's, by values.quoted_cells)."""
        if lines:
            lines = list(lines)
            lines.append("")
            self.stream.write("\r\n".join(lines))

    def _quoted(self, row):
        buf = io.StringIO()
        csv.writer(buf).writerow(row)
        return buf.getvalue()[:-2]

    def end_table(self):
        self.stream.write("\r\n\r\n")

    def close(self):
        self.stream.write(END)
        self.stream.flush()


def open_output(stream, compress=False):
    """A text stream to write CSV into `stream` (binary), gzip-compressed if asked."""
    if compress:
        stream = gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=5)
    return io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=False), stream

