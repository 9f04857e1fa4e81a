"""How far a long run has got, for a page to show while it runs (issues 15, 23): rows done, bytes read.

The merge runs in ONE transaction: progress written to the database inside it
would be invisible to every other connection until the commit.  A job's
progress therefore goes to the table plugin_sync_progress through a
connection of its own, in a thread of its own (side.py): one row per job,
written a few times a second at most while it moves, and every BEAT seconds
whatever (the job's heartbeat: a job whose beat stops is dead, jobs.py).  Any
app server over the same database shows it (SQLite: a file beside the
database, see side.py).

The engine's hooks are one call each and cost nothing when no one watches:

- `batch(rows)`: the merge, once per batch it merged;
- `reading(stream)`: fileio, the file about to be merged (its size and position
  give the share read, hence the rows still to come);
- `phase(name)`: log.Run, at the start of every run (import, pull, push, export);
- `batch(rows)` again: the export, once per batch it wrote; `expect(rows)`: a run that
  knows its size in advance (jobs.py, for an export).

Whoever wants progress (jobs.py) wraps the work in `with watching(Meter(db, job_id)):`;
the meter is per thread, so concurrent runs in one process never mix.
"""
import io
import json
import os
import threading
import time

from . import dialect, side

THROTTLE = 0.25  # seconds between two writes of a job's progress while it moves
BEAT = 5  # seconds between two writes while it does not (the job's heartbeat)

_local = threading.local()


def _meter():
    return getattr(_local, "meter", None)


def batch(rows):
    """The merge merged `rows` more rows (one call per batch)."""
    meter = _meter()
    if meter is not None:
        meter.add(rows)


def reading(stream):
    """The binary stream about to be merged: its position and size tell how much is read."""
    meter = _meter()
    if meter is not None:
        meter.read_from(stream)


def expect(rows):
    """The run will handle about `rows` rows (an export knows its tables' counts; an import learns it from
    the share of the file read)."""
    meter = _meter()
    if meter is not None:
        meter.expected = rows


def phase(name):
    """A run began: import, pull, push, export."""
    meter = _meter()
    if meter is not None:
        meter.set_phase(name)


class watching:
    """`with watching(meter):` the runs of this thread report to `meter`; its writer runs meanwhile, and the last
    state is written at the end."""

    def __init__(self, meter):
        self.meter = meter

    def __enter__(self):
        self.before = _meter()
        _local.meter = self.meter
        self.meter.start()
        return self.meter

    def __exit__(self, *exc):
        _local.meter = self.before
        self.meter.stop()
        return False


class Meter:
    """Counts rows and bytes of one job; with a `db`, its writer (side.Ticker) saves them as the job's row of
    plugin_sync_progress: every THROTTLE s while they move, every BEAT s whatever."""

    def __init__(self, db=None, job_id=None, clock=time.time, throttle=THROTTLE, beat=BEAT):
        self.db, self.job_id, self.clock, self.throttle, self.beat = db, job_id, clock, throttle, beat
        self.started = clock()
        self.done, self.phase = 0, None
        self.stream, self.size, self.last_read = None, None, None
        self.base = 0  # rows done before the current file (a sync: the pull's rows, then the push)
        self.expected = None  # rows the run will handle, when known in advance (progress.expect)
        self.saved, self.saved_at = None, 0.0  # what was written last, and when
        self.writer = None

    def set_phase(self, name):
        self.phase = name

    def read_from(self, stream):
        self.stream, self.size, self.last_read = stream, _size(stream), None
        self.base = self.done
        self.position()

    def add(self, rows):
        self.done += rows
        self.position()  # remembered: the stream may be closed by the next write

    def position(self):
        """Bytes of the current file read so far (the last known once it is closed; None if it cannot tell).
        Asked in the job's own thread only: the writer reads what it remembered."""
        try:
            if self.stream is not None and not self.stream.closed:
                self.last_read = self.stream.tell()
        except (OSError, ValueError, AttributeError):
            pass
        return self.last_read

    def state(self):
        return dict(phase=self.phase, done=self.done, base=self.base, read=self.last_read, size=self.size,
                    expected=self.expected, started=self.started, updated=self.clock())

    def start(self):
        if self.db is not None and self.job_id is not None:
            self.writer = side.Ticker(lambda: side.progress_database(self.db), self.write, self.throttle,
                                      name="plugin_sync-progress-%s" % self.job_id).start()

    def stop(self):
        if self.writer is not None:
            self.writer.stop()
            self.writer = None

    def write(self, pdb):
        """Save the state (the writer's thread, its own connection) if it moved, or if a beat is due."""
        state = self.state()
        moved = {k: v for k, v in state.items() if k != "updated"}
        if moved == self.saved and state["updated"] - self.saved_at < self.beat and not self.writer.stopping.is_set():
            return
        save(pdb, self.job_id, state)
        self.saved, self.saved_at = moved, state["updated"]


def save(pdb, job_id, state):
    """Write a job's state: its row updated, or made (one row per job)."""
    ph = dialect.placeholder(pdb)
    text, beat = json.dumps(state), state["updated"]
    if not side.write(pdb, "UPDATE %s SET state=%s, beat=%s WHERE job=%s" % (side.PROGRESS, ph, ph, ph),
                      (text, beat, int(job_id))):
        pdb.executesql("INSERT INTO %s (job, state, beat) VALUES (%s, %s, %s)" % (side.PROGRESS, ph, ph, ph),
                       placeholders=(int(job_id), text, beat))


def _size(stream):
    """The size in bytes of a file object, or None (a pipe, a zip member)."""
    try:
        if isinstance(stream, io.BytesIO):
            return len(stream.getbuffer())
        return os.fstat(stream.fileno()).st_size
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None


def read(db, job_id):
    """The last state a job's meter wrote (with `beat`: when, in the writer's clock), or None."""
    def fetch(pdb):
        rows = pdb.executesql("SELECT state, beat FROM %s WHERE job=%s" % (side.PROGRESS, dialect.placeholder(pdb)),
                              placeholders=(int(job_id),))
        if pdb is not db:
            pdb.rollback()
        return rows

    rows = side.reading_progress(db, fetch)
    if not rows:
        return None
    state = json.loads(rows[0][0])
    state["beat"] = rows[0][1]
    return state


def forget(db, older_than):
    """Remove the progress rows whose last beat is older than `older_than` (epoch seconds): finished jobs'."""
    def purge(pdb):
        pdb.executesql("DELETE FROM %s WHERE beat < %s" % (side.PROGRESS, dialect.placeholder(pdb)),
                       placeholders=(older_than,))
        if pdb is not db:  # SQLite's side file: its own transaction; the caller's commits the other
            pdb.commit()

    side.reading_progress(db, purge)


def estimate(state, now):
    """{done, total, rate, seconds_left, fraction} from a meter's state: total rows as expected, else estimated
    from the share of the file read (rows so far in this file / its bytes read so far); the rate since the start."""
    if not state:
        return dict(done=0, total=None, rate=None, seconds_left=None, fraction=None)
    done, base = state.get("done") or 0, state.get("base") or 0
    read_, size = state.get("read"), state.get("size")
    total = fraction = None
    if size and read_:
        fraction = min(1.0, float(read_) / size)
        if done > base:
            total = max(done, base + int(round((done - base) / fraction)))
    if state.get("expected"):
        total = max(done, state["expected"])
        fraction = min(1.0, float(done) / total) if total else None
    elapsed = max(1e-6, (state.get("updated") or now) - (state.get("started") or now))
    rate = done / elapsed if done else None
    left = (total - done) / rate if rate and total is not None else None
    return dict(done=done, total=total, rate=round(rate, 1) if rate else None,
                seconds_left=int(round(left)) if left is not None else None,
                fraction=round(fraction, 4) if fraction is not None else None)
