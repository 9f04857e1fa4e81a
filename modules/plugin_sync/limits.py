"""Bounds on what a file or a peer may make this instance hold: bytes in, bytes inflated, cells, files.

A 1 MB gzip can inflate to gigabytes, a zip entry can claim any size, one CSV
line can hold a gigabyte; a peer's answer can be endless.  Every such input is
read through these bounds, which raise TooLarge (saying which limit and which
setting raises it) before memory or disk run out.  Settings (plugins.sync.*):

    max_request_size   bytes of one file as received (a push, an upload, a peer's answer)
    max_inflated_size  bytes of the CSV once un-gzipped
    max_ratio          inflated / compressed bytes, for a gzip beyond 1 MiB inflated
    max_cell_size      characters of one CSV cell, and of one line of the file
    max_upload_size    bytes of one uploaded file carried in a zip bundle
"""
import io

from .errors import Denied, TooLarge

MB = 1 << 20
DEFAULTS = dict(
    max_request_size=256 * MB,
    max_inflated_size=2048 * MB,
    max_ratio=200,
    max_cell_size=8 * MB,
    max_upload_size=64 * MB,
)
RATIO_FLOOR = MB  # a small gzip of a repetitive file may inflate far more than max_ratio: harmless


class Limits:
    """The limits in force (from the settings, or the defaults)."""

    def __init__(self, settings=None, **explicit):
        for name, default in DEFAULTS.items():
            value = explicit.get(name)
            if value is None and settings is not None and hasattr(settings, "get"):
                value = settings.get(name)
            setattr(self, name, int(default if value is None else value))

    def too_large(self, what, limit, setting, **where):
        return TooLarge("%s exceeds the limit of %s (setting plugins.sync.%s)" % (what, _size(limit), setting),
                        **where)


def limits_of(settings):
    return settings if isinstance(settings, Limits) else Limits(settings)


class Counted(io.RawIOBase):
    """A raw stream over `f` that counts the bytes read and stops at `limit` with TooLarge."""

    def __init__(self, f, limit, fail):
        self.f, self.limit, self.fail, self.count = f, limit, fail, 0

    def readable(self):
        return True

    def readinto(self, b):
        data = self.f.read(len(b))
        self.count += len(data)
        if self.count > self.limit:
            raise self.fail()
        b[: len(data)] = data
        return len(data)


class Inflated(io.RawIOBase):
    """The un-gzipped stream, bounded in size and in ratio to the compressed bytes read (`compressed.count`)."""

    def __init__(self, gz, compressed, limits):
        self.gz, self.compressed, self.limits, self.count = gz, compressed, limits, 0

    def readable(self):
        return True

    def readinto(self, b):
        data = self.gz.read(len(b))
        self.count += len(data)
        lim = self.limits
        if self.count > lim.max_inflated_size:
            raise lim.too_large("the un-gzipped file", lim.max_inflated_size, "max_inflated_size")
        if self.count > RATIO_FLOOR and self.count > lim.max_ratio * max(self.compressed.count, 1):
            raise lim.too_large("the gzip's inflation ratio (%d:1 so far)" % (self.count // max(self.compressed.count, 1)),
                                lim.max_ratio, "max_ratio")
        b[: len(data)] = data
        return len(data)


def bounded_lines(text, limits):
    """The lines of a text stream, none longer than max_cell_size (a longer one raises TooLarge)."""
    limit = limits.max_cell_size + 2  # the line end
    while True:
        line = text.readline(limit)
        if not line:
            return
        if len(line) >= limit and not line.endswith("\n"):
            raise limits.too_large("a line of the file", limits.max_cell_size, "max_cell_size")
        yield line


def read_bounded(stream, limit, fail, chunk=1 << 16):
    """All of a stream's bytes into a spooled temporary file, at most `limit` of them; the file at 0."""
    import tempfile

    out = tempfile.SpooledTemporaryFile(max_size=8 * MB, prefix="plugin_sync-")
    total = 0
    while True:
        data = stream.read(chunk)
        if not data:
            break
        total += len(data)
        if total > limit:
            out.close()
            raise fail()
        out.write(data)
    out.seek(0)
    return out


def _size(n):
    if n >= MB and n % MB == 0:
        return "%d MiB" % (n // MB)
    return "%d" % n if n < 1024 else "%d bytes" % n


def check_body_size(settings, content_length):
    """A request body beyond max_request_size (413) or of unknown length (411) is Denied before it is read."""
    limit = limits_of(settings).max_request_size
    try:
        size = int(content_length)
    except (TypeError, ValueError):
        raise Denied(411, "Send the file with a Content-Length.", "LengthRequired")
    if size > limit:
        raise Denied(413, "The file (%d bytes) exceeds the limit of %d bytes (setting plugins.sync."
                     "max_request_size)." % (size, limit), "TooLarge")
