"""A dry run (preview) on SQLite leaves the database writable for Eden meanwhile (issue 19, finding 5).

While B previews A's file, Eden itself goes on writing through connections of
its own: here an administrator's login, which Eden records as an `auth_event`
row, written by another connection with a short busy timeout at the moment the
preview has merged its first batch.  The login's row is written; the preview
changes nothing and reports exactly what the real import then does.
"""
import datetime
import io
import sqlite3

import pytest
from edenseed import count, make

from applications.eden.modules.plugin_sync import fileio, progress

LOGIN_WAIT = 0.5  # seconds the other connection waits for the write lock (Eden's own: 5)


def settings(env):
    return env["plugin_sync_settings"]


class LoginDuringMerge(progress.Meter):
    """A progress meter that, after the first batch merged, logs an Eden login through its own connection."""

    def __init__(self, path):
        super().__init__(None)
        self.path_db, self.outcome = path, None

    def add(self, rows):
        super().add(rows)
        if self.outcome is None:
            self.outcome = eden_login_event(self.path_db)


def eden_login_event(path):
    """What Eden's login writes (an auth_event row), from another connection: "ok" or the error."""
    other = sqlite3.connect(path, timeout=LOGIN_WAIT)
    try:
        other.execute("INSERT INTO auth_event (time_stamp, client_ip, origin, description) VALUES (?, ?, ?, ?)",
                      (datetime.datetime.utcnow(), "127.0.0.1", "auth", "User 1 Logged-in"))
        other.commit()
        return "ok"
    except sqlite3.OperationalError as e:
        return str(e)
    finally:
        other.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_eden_can_log_a_user_in_while_a_dry_run_merges(eden_instance, backend):
    a = eden_instance("a")
    for i in range(30):
        make(a, "org_organisation", name="Preview Org %d" % i)
    data = io.BytesIO()
    fileio.export_to(a["db"], settings(a), data, fmt="csv")
    b = eden_instance("b")
    path = [f for _, name, f in b["db"].executesql("PRAGMA database_list") if name == "main"][0]
    before = count(b, "org_organisation"), count(b, "auth_event")

    # the request that starts the preview has written already (not committed): the preview starts anyway
    b["db"].auth_event.insert(description="written by the request before the preview")
    meter = LoginDuringMerge(path)
    with progress.watching(meter):
        dry = fileio.import_from(b["db"], settings(b), data.getvalue(), dry_run=True, name="a.csv")

    assert meter.outcome == "ok"  # Eden's login was written while the preview ran
    assert count(b, "org_organisation") == before[0] and count(b, "auth_event") == before[1] + 1
    real = fileio.import_from(b["db"], settings(b), data.getvalue(), name="a.csv")
    assert dry.tables == real.tables and dry.totals() == real.totals()
    assert dry.tables["org_organisation"]["created"] == 30
