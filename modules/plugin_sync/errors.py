"""What can go wrong in a sync, one class per failure a user can act on.

Each carries where it happened (table, line, column) so that the page, the CLI
and the JSON report can all say it the same way.
"""


class SyncError(Exception):
    """Base class: a sync failed and the database was left as it was."""

    def __init__(self, message, table=None, line=None, column=None):
        self.message, self.table, self.line, self.column = message, table, line, column
        super().__init__(self.describe())

    def describe(self):
        where = [
            "%s %s" % (k, v)
            for k, v in (("table", self.table), ("line", self.line), ("column", self.column))
            if v is not None
        ]
        return "%s (%s)" % (self.message, ", ".join(where)) if where else self.message

    def as_dict(self):
        return dict(
            error=type(self).__name__, message=self.message, table=self.table, line=self.line, column=self.column
        )


class FormatError(SyncError):
    """The file is not in pydal's CSV format (or is truncated: no END)."""


class TruncatedFile(FormatError):
    """The file ends before its END marker: it was cut in transfer."""


class BadValue(SyncError):
    """A cell cannot be converted to its field's type."""


class UnresolvedReference(SyncError):
    """A required reference names a uuid that is neither in the file nor here."""


class TableNotSynced(SyncError):
    """A table was asked for that the table policy never syncs (auth, settings, keys)."""


class PeerError(SyncError):
    """A peer could not be reached, refused us, or answered nonsense."""


class Locked(SyncError):
    """Another run against the same peer is in progress."""


class TooLarge(SyncError):
    """A file, a cell or an uploaded file is beyond a size limit (settings max_*)."""


class Refused(SyncError):
    """A file claims what its sender may not claim (another instance's state, a bad URL)."""


class Denied(SyncError):
    """A caller the endpoints turn away, with its HTTP status (401, 403, 411, 413, 429), the kind of refusal
    its JSON names, and the headers it needs (Retry-After): the controller only answers it."""

    def __init__(self, status, message, kind, headers=None):
        super().__init__(message)
        self.status, self.kind, self.headers = status, kind, dict(headers or {})


class Busy(SyncError):
    """Another import holds this database's write lock (SQLite) for longer than we wait; nothing changed."""


class MatchRuleError(SyncError):
    """The host's rule that matches records under other uuids (match = "eden") cannot be used for a table.

    `uuid`: the incoming record it failed on (aliases.py turns it into the file's line)."""

    def __init__(self, message, table=None, line=None, column=None, uuid=None):
        self.uuid = uuid
        super().__init__(message, table=table, line=line, column=column)


def failure(e, what="the import"):
    """Any exception as the error dict pages and JSON answers show (with `describe`, one clear line);
    one the engine did not foresee says so, and that nothing of `what` was written."""
    if isinstance(e, SyncError):
        return dict(e.as_dict(), describe=e.describe())
    message = "%s failed (%s: %s); nothing was written" % (what, type(e).__name__, (str(e).splitlines() or
                                                                                    ["no message"])[0])
    return dict(error="InternalError", message=message, describe=message)
