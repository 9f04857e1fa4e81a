"""Bundles: the CSV plus the uploaded files its records name, in one zip.

A record with an upload field names a file in the instance's uploads folder;
without the file the record is useless on the other side.  The zip holds
`data.csv` and `uploads/<stored name>`; anything else reads as plain CSV
(optionally gzip).  Files are read from the zip only when a record that names
them is written, so a large bundle is not loaded into memory.
"""
import io
import os
import shutil
import zipfile

from . import changes
from .merge import upload_folder
from .tables import synced_tables

ZIP_MAGIC = b"PK\x03\x04"
DATA = "data.csv"


def is_bundle(head):
    return head[:4] == ZIP_MAGIC


def upload_files(db, settings, tables=None, since=None, until=None):
    """(stored name, path) of every uploaded file named by the exported records."""
    for name in synced_tables(db, settings, only=tables):
        table = db[name]
        for field in table:
            if field.type != "upload":
                continue
            query = field != None  # noqa: E711 (pydal)
            if since is not None:
                query &= changes.changed_query(db, name, since, until)
            folder = upload_folder(db, field)
            for row in db(query).select(field, orderby=table.id):
                path = os.path.join(folder, row[field.name])
                if row[field.name] and os.path.exists(path):
                    yield row[field.name], path


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
    """The upload files of a bundle as a read-only mapping {stored name: bytes}, read on demand."""

    def __init__(self, zf):
        self.zf = zf
        self.names = {n[len("uploads/"):]: n for n in zf.namelist() if n.startswith("uploads/") and len(n) > 8}

    def __contains__(self, name):
        return name in self.names

    def __getitem__(self, name):
        return self.zf.read(self.names[name])

    def __len__(self):
        return len(self.names)


def open_bundle(source):
    """(CSV binary stream, BundleFiles) of a zip bundle given as a path or a binary stream."""
    if not hasattr(source, "seek") or not getattr(source, "seekable", lambda: True)():
        data = io.BytesIO(source.read())
        source = data
    from .errors import FormatError

    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise FormatError("zip bundle is damaged or cut short: %s" % e) from None
    if DATA not in zf.namelist():
        raise FormatError("zip bundle has no %s" % DATA)
    return zf.open(DATA), BundleFiles(zf)


def copy_stream(src, dst):
    shutil.copyfileobj(src, dst, 1 << 20)
