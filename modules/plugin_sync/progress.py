"""How far a long run has got, for a page to show while it runs (issue 15): rows done, bytes read.

The merge runs in ONE transaction: progress written to the database inside it
would be invisible to every other connection until the commit (and on SQLite
the database is write-locked), so a run's progress goes to a small JSON file
instead, written atomically (os.replace) a few times a second at most.

The engine's hooks are one call each and cost nothing when no one watches:

- `batch(rows)`: the merge, once per batch it merged;
- `reading(stream)`: fileio, the file about to be merged (its size and position
  give the share read, hence the rows still to come);
- `phase(name)`: log.Run, at the start of every run (import, pull, push, export);
- `batch(rows)` again: the export, once per batch it wrote; `expect(rows)`: a run that
  knows its size in advance (jobs.py, for an export).

Whoever wants progress (jobs.py) wraps the work in `with watching(Meter(path)):`;
the meter is per thread, so concurrent runs in one process never mix.
"""
import io
import json
import os
import threading
import time

THROTTLE = 0.25  # seconds between two writes of the progress file

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
    """`with watching(meter):` the runs of this thread report to `meter`; the last state is written at the end."""

    def __init__(self, meter):
        self.meter = meter

    def __enter__(self):
        self.before = _meter()
        _local.meter = self.meter
        self.meter.write()
        return self.meter

    def __exit__(self, *exc):
        _local.meter = self.before
        self.meter.write()
        return False


class Meter:
    """Counts rows and bytes of one job and writes them to `path` (JSON), at most every THROTTLE seconds."""

    def __init__(self, path, clock=time.time, throttle=THROTTLE):
        self.path, self.clock, self.throttle = path, clock, throttle
        self.started = clock()
        self.done, self.phase = 0, None
        self.stream, self.size, self.last_read = None, None, None
        self.base = 0  # rows done before the current file (a sync: the pull's rows, then the push)
        self.expected = None  # rows the run will handle, when known in advance (progress.expect)
        self.written = 0.0

    def set_phase(self, name):
        self.phase = name
        self.write()

    def read_from(self, stream):
        self.stream, self.size, self.last_read = stream, _size(stream), None
        self.base = self.done
        self.write()

    def add(self, rows):
        self.done += rows
        self.position()  # remembered: the stream may be closed by the next write
        if self.clock() - self.written >= self.throttle:
            self.write()

    def position(self):
        """Bytes of the current file read so far (the last known once it is closed; None if it cannot tell)."""
        try:
            if self.stream is not None and not self.stream.closed:
                self.last_read = self.stream.tell()
        except (OSError, ValueError, AttributeError):
            pass
        return self.last_read

    def state(self):
        return dict(phase=self.phase, done=self.done, base=self.base, read=self.position(), size=self.size,
                    expected=self.expected,
                    started=self.started, updated=self.clock(), pid=os.getpid())

    def write(self):
        """Write the state atomically: a reader sees the old file or the new one, never half of one."""
        self.written = self.clock()
        if not self.path:
            return
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(self.state(), f)
        os.replace(tmp, self.path)


def _size(stream):
    """The size in bytes of a file object, or None (a pipe, a zip member)."""
    try:
        if isinstance(stream, io.BytesIO):
            return len(stream.getbuffer())
        return os.fstat(stream.fileno()).st_size
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None


def read(path):
    """The last state written to `path`, or None."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


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
