"""Bundles: the CSV plus the uploaded files its records name, in one zip.

A record with an upload field names a file in the instance's uploads folder;
without the file the record is useless on the other side.  The zip holds
`data.csv` and `uploads/<stored name>`; anything else reads as plain CSV
(optionally gzip).  Files are read from the zip only when a record that names
them is written, and streamed to disk, so a large bundle is not loaded into
memory.  Only values naming a file inside their field's upload folder are
read on export (uploads.path_of); sizes are bounded on import (limits.py).
"""
import io
import os
import zipfile
import zlib

from . import changes
from .errors import FormatError, TooLarge
from .limits import Counted, limits_of, read_bounded
from .tables import define_tables, synced_tables
from .uploads import path_of

ZIP_MAGIC = b"PK\x03\x04"
DATA = "data.csv"


def is_bundle(head):
    return head[:4] == ZIP_MAGIC


def upload_files(db, settings, tables=None, since=None, until=None, warnings=None, parts=None):
    """(stored name, path) of every uploaded file named by the exported records.

    A value that names no file inside its field's upload folder (`../x`,
    `/etc/passwd`) is never read: it is skipped, with a message in `warnings`.
    `parts`: one batch's tables and id bounds ([(table, (lo, hi))], batches.plan): its files only.
    """
    bounds = dict(parts) if parts is not None else None
    names = synced_tables(db, settings, only=tables)
    if bounds is not None:
        names = [name for name in names if name in bounds]
    else:  # incremental: the tables with changes in the range (the host defines just those)
        names = define_tables(settings, names if since is None else changes.tables_in_range(db, names, since, until))
    for name in names:
        table = db[name]
        lo, hi = (bounds or {}).get(name) or (None, None)
        for field in table:
            if field.type != "upload":
                continue
            query = field != None  # noqa: E711 (pydal)
            if since is not None:
                query &= changes.changed_query(db, name, since, until)
            if lo is not None:
                query &= table.id > lo
            if hi is not None:
                query &= table.id <= hi
            for row in db(query).select(table.uuid, field, orderby=table.id):
                value = row[field.name]
                path = path_of(db, field, value) if value else None
                if value and path is None and warnings is not None:
                    warnings.append("record %s of %s: upload value %r names no file inside the upload folder of %s:"
                                    " the file is not sent" % (row.uuid, name, value[:80], field))
                if path and os.path.exists(path):
                    yield value, path


def write_bundle(out, csv_path, files):
    """Zip the CSV file at `csv_path` and the upload files into the binary stream `out`."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(csv_path, DATA)
        seen = set()
        for stored, path in files:
            if stored not in seen:
                seen.add(stored)
                z.write(path, "uploads/" + stored)


class BundleFiles:
    """The upload files of a bundle, {stored name: entry}, copied to disk on demand within max_upload_size."""

    def __init__(self, zf, limits=None):
        self.zf, self.limits = zf, limits_of(limits)
        self.names = {n[len("uploads/"):]: n for n in zf.namelist() if n.startswith("uploads/") and len(n) > 8}

    def __contains__(self, name):
        return name in self.names

    def __len__(self):
        return len(self.names)

    def copy_to(self, name, path):
        """Write the file `name` to `path`, refusing one beyond max_upload_size (declared or actual)."""
        with open(path, "wb") as dst:
            self.read(name, dst.write)

    def check(self):
        """Read every upload entry once (up to max_upload_size), before anything is written: a damaged
        one (a bad CRC, a broken deflate stream) is a FormatError naming it, in a dry run too, rather
        than a failure (HTTP 500) halfway through the real import."""
        for name in self.names:
            try:
                self.read(name, lambda data: None)
            except TooLarge:  # refused where a record names it, with its table, line and column (copy_to)
                pass

    def read(self, name, write):
        """The content of entry `name` to `write`, in pieces; TooLarge beyond max_upload_size, FormatError
        when the zip's entry is damaged (zipfile checks the CRC at its end)."""
        lim, entry = self.limits, self.names[name]
        fail = lambda: lim.too_large("uploaded file %r" % name[:80], lim.max_upload_size, "max_upload_size")  # noqa: E731
        if self.zf.getinfo(entry).file_size > lim.max_upload_size:
            raise fail()
        try:
            with self.zf.open(entry) as src:
                source = io.BufferedReader(Counted(src, lim.max_upload_size, fail))
                for piece in iter(lambda: source.read(1 << 20), b""):
                    write(piece)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
            raise FormatError("zip bundle entry %r is damaged (%s): nothing was written" % (entry[:120], e)) from None


def open_bundle(source, limits=None):
    """(CSV binary stream, BundleFiles) of a zip bundle given as a path or a binary stream.

    The CSV entry is read within max_inflated_size; a stream that cannot seek is
    spooled (within max_request_size), not held in memory.
    """
    lim = limits_of(limits)
    if not hasattr(source, "seek") or not getattr(source, "seekable", lambda: True)():
        source = read_bounded(source, lim.max_request_size,
                              lambda: lim.too_large("the bundle", lim.max_request_size, "max_request_size"))
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise FormatError("zip bundle is damaged or cut short: %s" % e) from None
    if DATA not in zf.namelist():
        raise FormatError("zip bundle has no %s" % DATA)
    if zf.getinfo(DATA).file_size > lim.max_inflated_size:
        raise lim.too_large("the bundle's %s" % DATA, lim.max_inflated_size, "max_inflated_size")
    fail = lambda: lim.too_large("the bundle's %s" % DATA, lim.max_inflated_size, "max_inflated_size")  # noqa: E731
    files = BundleFiles(zf, lim)
    files.check()
    return io.BufferedReader(Counted(zf.open(DATA), lim.max_inflated_size, fail)), files
