"""Convergence at the engine level, property-based: random histories of edits and syncs.

Hypothesis draws a history and plays it on 3 or 4 instances that start
empty (same lookup lists, different local ids), optionally after a shared
start (a few records created on one instance and copied to all):

- create an organisation, a location (parent: a random live location), a
  person (a location), a hospital (an organisation and a location) or an
  incident (a list:reference of organisations);
- edit a random field of a recent live record, stamped with the instance's
  clock (edits in the same second are common: the clock moves only on a
  `tick`), or explicitly equal to / 1-5 s older than / 1 s newer than the
  record's current modified_on, or a day ahead of the instance's clock;
- soft delete (Eden style: deleted=True, references moved to deleted_fk);
- hard delete: the database cascades to the records that refer to it, the
  application takes the deleted ids out of list:references (the database
  does not), the triggers write tombstones;
- sync(i, j): a full export of i, or an incremental one since j's
  checkpoint of i where there is one, imported into j;
- tick (the shared clock moves 1 s to 1 min), skew (one instance's clock
  runs 3 hours ahead of or behind the others).

Then gossip: every ordered pair syncs (all full or all incremental) until a
whole round changes nothing (at most 8 rounds, else the test fails).

Properties:

1. Convergence: every instance holds the same records with the same content
   by uuid, modified_on as the clocks allow (see below), no reference
   dangles (assert_converged_as_clocks_allow).
2. Nothing lost: every version an operation wrote is, at the end, the
   content everywhere, or a loser in some instance's plugin_sync_conflict,
   or superseded: an instance that held it then edited or deleted that
   record.  Content is compared without modified_on (the same content written
   again is not lost) and without references to records hard-deleted by the
   end (a deletion nulls them).  And the simpler check: a version strictly
   newer than every other version and every hard delete of its record, that
   no instance replaced knowingly, is the content everywhere.
3. Idempotence: re-importing a file right after importing it writes nothing
   and logs no conflict; after gossip, re-importing every file of the run
   (stale by then, in the order they were made) into its receiver changes
   nothing either; and an import never counts a write that changes nothing
   (a value stored in two forms: '||' and NULL for an empty list).
4. Hard-deleted records do not come back: a uuid hard-deleted (by an
   operation, or by a cascade) exists at the end only if its final version is
   strictly newer than its last deletion (edited after it: kept, by design).

Semantics the properties take as they are (the engine's design):
- ties between concurrent versions (same second, neither side had seen the
  other) are broken by a content hash: the same winner everywhere, the
  loser logged, even when one was in fact written after the other on a third
  instance (knowledge of who saw what is per pair, not transitive);
- between concurrent versions the later modified_on wins, whatever clock
  wrote it (a skewed clock's edit may lose; it is logged); when the sender
  had seen ours, its version wins whatever the clocks say;
- a deletion beats the versions it is not older than (a tie goes to the
  deletion), and they are logged; a record edited after a deletion stays,
  and so does one referring to a deleted record (reference nulled);
- every import runs on its receiver's simulated clock: a stamp more than
  clock_tolerance ahead of it (an instance 3 hours ahead, an edit stamped a
  day ahead, their deletions) is suspect there and dated by that clock;
  such a version or deletion does not beat a concurrent local version; a
  deletion beats a version the deleter had seen, whatever the clocks say;
- so "converged" (property 1) means: the same records, with the same
  content and deleted state, everywhere; one modified_on, but where it is
  ahead of an instance's clock: there that instance holds its own dating
  of the version (within its limit).  Properties 2 and 4 compare contents
  without modified_on, and date a version as its writer stamped it.

Clocks are simulated: a shared time from BASE_TIME plus a per-instance
skew, and fixed uuids, so that content hashes (the tie-breaks) and the run
repeat exactly.  The database stamps a tombstone with its own clock; the
test restamps the tombstones that the database just wrote with the
instance's simulated clock.

The instances are made once per test and emptied at the start of every
example (function-scoped fixtures do not reset between examples).  The run
is reproducible (derandomize=True, no example database): EXAMPLES examples
on SQLite, fewer on PostgreSQL, plus the @example histories below (each one
a bug found by this test, the minimal history that showed it).
CONVERGENCE_EXAMPLES=n (CONVERGENCE_EXAMPLES_PG=n) sets the SQLite (PostgreSQL)
count for a deeper local run;
CONVERGENCE_NO_SHRINK=1 reports the first failing history as drawn (shrinking
a history takes minutes).
"""
import datetime
import io
import json
import os
import random
import uuid as uuidlib

from hypothesis import HealthCheck, Phase, event, example, given, settings as hsettings, strategies as st
from synchelpers import LOCAL, assert_converged, dangling, instances, settings, snapshot

from applications.eden.modules.plugin_sync.fileformat import NULL
from applications.eden.modules.plugin_sync.fileio import export_bytes, export_to, import_from
from applications.eden.modules.plugin_sync.merge import import_and_sync
from applications.eden.modules.plugin_sync.peers import this_instance
from applications.eden.modules.plugin_sync.tables import references, synced_tables

EXAMPLES = {"sqlite": int(os.environ.get("CONVERGENCE_EXAMPLES", 40)),
            "postgres": int(os.environ.get("CONVERGENCE_EXAMPLES_PG", 5))}
MAX_OPS = 40
BASE_TIME = datetime.datetime(2025, 3, 1, 12, 0, 0)  # the simulated clocks start here
GOSSIP_ROUNDS = 8
FUTURE = datetime.timedelta(days=1)  # an edit stamped by a clock a day ahead

TABLES = ("org_organisation", "gis_location", "pr_person", "hms_hospital", "event_incident")
TEXT = ["A", "B", "a, b", 'say "hi"', "line 1\nline 2", "ünïcode", ""]
POOLS = {
    "org_organisation": {
        "name": ["Red Cross", "MSF", "Oxfam, Intl", 'The "Org"', "ü"],
        "acronym": ["RC", "MSF", None, ""],
        "country": ["TL", "ID", None],
        "phone": ["1", "2", None],
        "website": ["http://x.org", None],
        "comments": TEXT + [None],
    },
    "gis_location": {
        "name": ["Dili", "Aileu", "Baucau, East", "Ermera"],
        "level": ["L0", "L1", "L2", "L3", None],
        "parent": "ref",
        "code": ["TL", "TL-AL", None],
        "lat": [-8.73, 0.1 + 0.2, 1e-07, None],
        "lon": [125.57, -0.0, None],
        "population": [0, 37926, None],
        "comments": TEXT + [None],
    },
    "pr_person": {
        "first_name": ["Maria", "Mariano", "José"],
        "last_name": ["Alex", "Rodriques", None],
        "gender": ["female", "male", "other", None],
        "date_of_birth": [datetime.date(1980, 2, 29), None],
        "email": ["m@x.tl", None],
        "phone": ["+670 1", None],
        "location_id": "ref",
        "lat": [-8.5, None],
    },
    "hms_hospital": {
        "name": ["Central", "Hospital, \"Dili\"", "Clinic"],
        "code": ["H1", None],
        "organisation_id": "ref",
        "location_id": "ref",
        "status": ["Functional", "Closed", None],
        "total_beds": [0, 120, None],
        "comments": TEXT + [None],
    },
    "event_incident": {
        "name": ["Floods", "Earthquake", "Fire, North"],
        "start_date": [datetime.datetime(2026, 1, 2, 3, 4, 5), None],
        "location_id": "ref",
        "organisation_ids": "list",
        "closed": [True, False],
        "comments": TEXT + [None],
    },
}
REQUIRED = {"org_organisation": "name", "gis_location": "name", "pr_person": "first_name",
            "hms_hospital": "name", "event_incident": "name"}


# ------------------------------------------------------------------ operations

def inst():
    return st.integers(0, 3)


def idx():
    return st.integers(0, 5)  # counted from the newest record: operations meet on the same records


SYNC = st.tuples(st.just("sync"), inst(), inst(), st.booleans())
EDIT = st.tuples(st.just("edit"), inst(), st.sampled_from(TABLES), idx(), st.integers(0, 9), st.integers(0, 99),
                 st.sampled_from(["clock", "clock", "clock", "equal", "older", "newer", "future"]))
OPS = st.one_of(
    SYNC,
    st.tuples(st.just("create"), inst(), st.sampled_from(TABLES), st.integers(0, 2 ** 16)),
    EDIT,
    SYNC,
    EDIT,
    st.tuples(st.just("tick"), st.sampled_from([1, 1, 2, 60])),
    st.tuples(st.just("soft_delete"), inst(), st.sampled_from(TABLES), idx()),
    st.tuples(st.just("hard_delete"), inst(), st.sampled_from(TABLES), idx()),
    st.tuples(st.just("skew"), inst(), st.sampled_from([0, -3, 3])),
)
# (instances, incremental gossip, shared start, operations)
HISTORY = st.tuples(st.sampled_from([3, 4]), st.booleans(), st.booleans(), st.lists(OPS, min_size=3, max_size=MAX_OPS))
# The histories that found the engine's bugs, minimal (all pass now; each fails without its fix).
REGRESSIONS = {
    # an empty list:reference stored as '||' here and as NULL by the merge: rewritten at every sync
    "empty list": (3, False, False, [("create", 0, "event_incident", 83), ("tick", 1), ("sync", 0, 2, True),
                                     ("skew", 2, 3)]),
    # a full file re-sends a version merged already: a false conflict at every re-import
    "merged already": (3, False, True, [("edit", 1, "org_organisation", 0, 0, 0, "clock")]),
    # a stale file won a same-second tie against the newer version it had sent before
    "stale tie": (3, False, True, [("sync", 0, 0, False), ("edit", 0, "org_organisation", 0, 0, 0, "equal"),
                                   ("tick", 1)]),
    # an edit stamped older than the version it replaced (clock behind) was dropped without a trace
    "clock behind": (3, False, True, [("sync", 0, 0, False), ("edit", 0, "org_organisation", 0, 0, 0, "older"),
                                      ("tick", 1)]),
    # the same content with two modified_on: the instances never agreed on it
    "same content": (3, False, True, [("sync", 0, 0, False), ("edit", 0, "org_organisation", 0, 0, 0, "older"),
                                      ("edit", 0, "org_organisation", 0, 0, 57, "clock"), ("tick", 1)]),
    # the tie-break hashed CSV text on one side and typed values (-8.5) on the other: endless flip-flop
    "hash": (3, False, True, [("edit", 0, "pr_person", 0, 1, 1, "equal"), ("edit", 1, "pr_person", 0, 7, 2, "equal")]),
    # an edit that loses to a concurrent hard delete was not logged
    "edit vs delete": (3, False, True, [("sync", 0, 0, False), ("soft_delete", 1, "org_organisation", 0),
                                        ("hard_delete", 0, "org_organisation", 0)]),
    # an incoming version beaten by our own later hard delete was not logged
    "beaten by our delete": (4, True, True, [
        ("sync", 0, 0, True), ("sync", 0, 0, True), ("sync", 0, 0, False), ("edit", 0, "pr_person", 0, 0, 80, "clock"),
        ("sync", 0, 1, False), ("sync", 1, 0, True), ("tick", 1), ("sync", 3, 0, False), ("sync", 0, 0, False),
        ("hard_delete", 3, "pr_person", 2)]),
    # a new person, of the same second as its location's deletion elsewhere, deleted here by the cascade of
    # that location's tombstone: its own tombstone was dated by this instance's (skewed) clock, not the deletion's
    "cascade dated here": (3, False, True, [("hard_delete", 3, "gis_location", 0), ("create", 2, "pr_person", 8642),
                                            ("skew", 2, -3)]),
    # a new person, deleted here by the database's cascade of its location's tombstone, without a trace
    "cascade": (4, True, True, [("sync", 0, 0, False), ("soft_delete", 0, "org_organisation", 0),
                                ("create", 2, "pr_person", 157), ("hard_delete", 0, "gis_location", 0),
                                ("soft_delete", 0, "pr_person", 0)]),
    # a location edited after its parent was deleted: kept by its own tombstone, then deleted by the cascade
    "cascade after edit": (3, False, True, [
        ("edit", 2, "gis_location", 0, 0, 42, "clock"), ("skew", 2, -3), ("hard_delete", 0, "gis_location", 5),
        ("tick", 2), ("hard_delete", 2, "event_incident", 5), ("edit", 2, "gis_location", 0, 8, 42, "newer")]),
    # deleted, back (edited later elsewhere), deleted again: the old tombstone time let it come back
    "deleted twice": (3, False, True, [
        ("tick", 1), ("hard_delete", 0, "org_organisation", 0), ("tick", 1),
        ("edit", 1, "org_organisation", 0, 1, 7, "clock"), ("sync", 1, 1, False), ("tick", 1),
        ("hard_delete", 0, "org_organisation", 0)]),
    # two tombstones of one uuid: the older one kept, a stale file brought the record back
    "older tombstone": (3, False, True, [("skew", 2, -3), ("hard_delete", 2, "hms_hospital", 0),
                                         ("hard_delete", 0, "hms_hospital", 0)]),
    # a tombstone left the deleted id in a list:reference here
    "list after delete": (3, False, True, [("hard_delete", 0, "org_organisation", 0), ("tick", 1),
                                           ("edit", 2, "event_incident", 0, 1, 3, "clock")]),
    # deleted_fk written by the application with its keys in another order than the merge's: rewritten
    "deleted_fk order": (4, True, True, [
        ("tick", 1), ("edit", 0, "event_incident", 0, 2, 36, "clock"), ("sync", 0, 0, False),
        ("edit", 0, "org_organisation", 0, 0, 0, "clock"), ("sync", 0, 0, True), ("sync", 0, 0, True),
        ("sync", 0, 0, False), ("sync", 0, 0, True), ("soft_delete", 3, "hms_hospital", 2)]),
    # a parent set to a location later in the same file (deferred) on a record otherwise unchanged: lost
    "forward reference": (3, False, False, [("create", 0, "gis_location", 1), ("sync", 0, 0, False),
                                            ("create", 0, "gis_location", 2), ("tick", 1),
                                            ("edit", 0, "gis_location", 1, 6, 0, "clock")]),
    # an incoming list naming a record hard-deleted here differed only by that entry: a conflict that
    # changed nothing (the entry, deferred, was dropped at the end), counted and logged as a write
    "list entry deleted here": (4, False, True, [
        ("edit", 0, "event_incident", 0, 2, 36, "clock"), ("edit", 0, "event_incident", 5, 2, 36, "clock"),
        ("hard_delete", 2, "org_organisation", 4), ("tick", 1), ("soft_delete", 0, "event_incident", 4)]),
}
PRELUDE = [("create", 0, "org_organisation", 1), ("create", 0, "org_organisation", 2),
           ("create", 0, "gis_location", 3), ("create", 0, "gis_location", 4), ("create", 0, "pr_person", 5),
           ("create", 0, "hms_hospital", 6), ("create", 0, "event_incident", 7), ("tick", 1)]


def utcnow():
    return datetime.datetime.utcnow().replace(microsecond=0)


def freeze(content):
    return tuple(sorted((k, str(v)) for k, v in content.items()))



def played(envs, incremental_gossip, shared_start, ops):
    """A World on `envs` with `ops` applied; with shared_start the same few records (PRELUDE) are
    everywhere first, so that the operations meet on them."""
    world = World(envs, incremental_gossip)
    if shared_start:
        for op in PRELUDE:
            world.apply(op)
        for j in range(1, len(envs)):
            world.sync(0, j, False)
    for op in ops:
        world.apply(op)
    return world

class World:
    """The instances, their simulated clocks, and what the test knows about every version."""

    def __init__(self, envs, incremental_gossip):
        self.envs, self.n = envs, len(envs)
        self.incremental_gossip = incremental_gossip
        self.real_start = utcnow()
        self.now = BASE_TIME  # fixed, like the uuids: content hashes (tie-breaks) repeat from run to run
        self.skew = [0] * self.n
        self.me = [this_instance(e["db"]).base_uuid for e in envs]
        self.versions = []  # (table, uuid, frozen content, modified_on, step)
        self.held = [dict() for _ in envs]  # per instance: {uuid: {frozen contents it held}}
        self.superseded = set()  # (uuid, frozen) replaced knowingly by an instance that held it
        self.deleted = {}  # uuid -> latest hard delete time
        self.files = []  # (receiver, data)
        self.step = 0

    def clock(self, i):
        return self.now + datetime.timedelta(hours=self.skew[i])

    # -- reading an instance
    def live(self, i, table):
        db = self.envs[i]["db"]
        t = db[table]
        return [r.id for r in db(t.deleted != True).select(t.id, orderby=t.id)]  # noqa: E712

    def present(self, i, table):
        db = self.envs[i]["db"]
        t = db[table]
        return [r.id for r in db(t).select(t.id, orderby=t.id)]

    def observe(self, i):
        """Remember every version instance i holds now; return its snapshot."""
        snap = snapshot(self.envs[i])
        for table, rows in snap.items():
            for u, content in rows.items():
                self.held[i].setdefault(u, set()).add(freeze(content))
        return snap

    def record_version(self, i, table, record_id):
        db = self.envs[i]["db"]
        snap = snapshot(self.envs[i], [table])[table]
        u = db[table](record_id).uuid
        content = snap[u]
        frozen = freeze(content)
        mod = datetime.datetime.fromisoformat(content["modified_on"])
        self.versions.append((table, u, frozen, mod, self.step))
        self.held[i].setdefault(u, set()).add(frozen)

    def note_deleted(self, db, uuids):
        """Records an import deleted: their deletion is dated as their tombstone here says."""
        tomb = db.plugin_sync_tombstone
        for r in db(tomb.record_uuid.belongs(uuids)).select(tomb.record_uuid, tomb.deleted_on) if uuids else []:
            self.deleted[r.record_uuid] = max(self.deleted.get(r.record_uuid, r.deleted_on), r.deleted_on)

    def supersede(self, i, u):
        for frozen in self.held[i].get(u, ()):
            self.superseded.add((u, frozen))

    def restamp(self, i):
        """Tombstones the database just stamped with the real clock get instance i's simulated clock."""
        db = self.envs[i]["db"]
        tomb = db.plugin_sync_tombstone
        threshold = self.real_start - datetime.timedelta(hours=1)
        q = tomb.deleted_on > threshold
        uuids = [r.record_uuid for r in db(q).select(tomb.record_uuid)]
        if uuids:
            db(q).update(deleted_on=self.clock(i))
        for u in uuids:
            self.deleted[u] = max(self.deleted.get(u, self.clock(i)), self.clock(i))
        return uuids

    # -- values
    def value(self, i, table, field, rng):
        pool = POOLS[table][field]
        if pool == "ref":
            target = references(self.envs[i]["db"][table])
            target = [t for f, t, _ in target if f == field][0]
            ids = self.live(i, target)
            return rng.choice(ids + [None]) if ids else None
        if pool == "list":
            ids = self.live(i, "org_organisation")
            return rng.sample(ids, rng.randint(0, min(3, len(ids))))
        return rng.choice(pool)

    # -- operations
    def apply(self, op):
        self.step += 1
        kind = op[0]
        getattr(self, "op_" + kind)(*op[1:])

    def pick(self, i, table, rec, among=None):
        """(instance, its db, the id of its rec-th newest record of table, or None if it has none)."""
        i = i % self.n
        ids = (among or self.live)(i, table)
        return i, self.envs[i]["db"], ids[-1 - rec % len(ids)] if ids else None

    def op_tick(self, seconds):
        self.now += datetime.timedelta(seconds=seconds)

    def op_skew(self, i, hours):
        self.skew[i % self.n] = hours

    def op_create(self, i, table, seed):
        i, rng = i % self.n, random.Random(seed)
        db = self.envs[i]["db"]
        values = {f: self.value(i, table, f, rng) for f in POOLS[table]}
        if values[REQUIRED[table]] in (None, ""):
            values[REQUIRED[table]] = "x"
        stamp = self.clock(i)
        bits = random.Random("%d-%d" % (self.step, seed)).getrandbits(128)  # repeatable, unique per step
        values["uuid"] = "urn:uuid:%s" % uuidlib.UUID(int=bits, version=4)
        rid = db[table].insert(created_on=stamp, modified_on=stamp, **values)
        db.commit()
        self.record_version(i, table, rid)

    def op_edit(self, i, table, rec, field, value, mode):
        i, db, rid = self.pick(i, table, rec)
        if rid is None:
            return
        fields = sorted(POOLS[table])
        field = fields[field % len(fields)]
        row = db[table](rid)
        rng = random.Random(value)
        v = self.value(i, table, field, rng)
        for _ in range(3):  # an edit that changes something, mostly
            if v != row[field]:
                break
            v = self.value(i, table, field, rng)
        if field == REQUIRED[table] and v in (None, ""):
            v = "y"
        if field == "parent" and v == rid:
            v = None
        stamp = {
            "clock": self.clock(i),
            "equal": row.modified_on,
            "older": row.modified_on - datetime.timedelta(seconds=1 + value % 5),
            "newer": row.modified_on + datetime.timedelta(seconds=1),
            "future": self.clock(i) + FUTURE,
        }[mode]
        self.supersede(i, row.uuid)
        db(db[table].id == rid).update(**{field: v, "modified_on": stamp})
        db.commit()
        self.record_version(i, table, rid)

    def op_soft_delete(self, i, table, rec):
        i, db, rid = self.pick(i, table, rec)
        if rid is None:
            return
        row = db[table](rid)
        fk = {f: row[f] for f, _, is_list in references(db[table]) if not is_list and row[f]
              and f not in ("created_by", "modified_by")}
        self.supersede(i, row.uuid)
        db(db[table].id == rid).update(deleted=True, deleted_fk=json.dumps(fk) if fk else None,
                                       modified_on=self.clock(i), **{f: None for f in fk})
        db.commit()
        self.record_version(i, table, rid)

    def op_hard_delete(self, i, table, rec):
        i, db, rid = self.pick(i, table, rec, self.present)
        if rid is None:
            return
        before = snapshot(self.envs[i])
        tables = synced_tables(db, settings(self.envs[i]))
        present = {t: set(self.present(i, t)) for t in tables}
        db(db[table].id == rid).delete()  # the database cascades to the records that reference it
        # and the application takes the deleted ids out of list:references (the database does not)
        deleted = {t: present[t] - set(self.present(i, t)) for t in tables}
        for t in tables:
            for f, target, is_list in references(db[t]):
                if is_list and deleted[target]:
                    for r in db(db[t][f] != None).select(db[t].id, db[t][f]):  # noqa: E711
                        if set(r[f] or []) & deleted[target]:
                            kept = [k for k in r[f] if k not in deleted[target]]
                            db(db[t].id == r.id).update(**{f: kept, "modified_on": self.clock(i)})
        self.restamp(i)
        db.commit()
        after = snapshot(self.envs[i])
        uuids = lambda snap: {u: c for rows in snap.values() for u, c in rows.items()}  # noqa: E731
        tables_of = {u: t for t, rows in before.items() for u in rows}
        before, after = uuids(before), uuids(after)
        for u in set(before) - set(after):
            self.deleted[u] = max(self.deleted.get(u, self.clock(i)), self.clock(i))
        for u in before:
            if after.get(u) != before[u]:  # deleted, or changed by the delete: replaced knowingly
                self.supersede(i, u)
                if u in after:
                    mod = datetime.datetime.fromisoformat(after[u]["modified_on"])
                    self.versions.append((tables_of[u], u, freeze(after[u]), mod, self.step))
        self.observe(i)

    def imported(self, j, data):
        """Merge `data` into instance j on j's clock (a stamp ahead of it is suspect there) and commit."""
        env = self.envs[j]
        report = import_and_sync(env["db"], data, settings(env), now=self.clock(j))
        env["db"].commit()
        return report

    def op_sync(self, i, j, incremental):
        i = i % self.n
        j = (i + 1 + j % (self.n - 1)) % self.n
        self.sync(i, j, incremental)

    def sync(self, i, j, incremental):
        """Export i (incrementally since j's checkpoint of i where there is one), import into j."""
        src, dst = self.envs[i], self.envs[j]
        since = None
        if incremental:
            peers = dst["db"].sync_instance
            peer = dst["db"](peers.base_uuid == self.me[i]).select().first()
            if peer and peer.checkpoint_received:
                since = peer.checkpoint_received
        data = export_bytes(src["db"], settings(src), since=since)
        before = {u: c for rows in snapshot(dst).values() for u, c in rows.items()}
        report = self.imported(j, data)
        self.restamp(j)
        dst["db"].commit()
        self.files.append((j, data, self.clock(j)))
        snap = self.observe(j)
        # every write it counts changes what the record exports (no update of a value stored differently)
        after = {u: c for rows in snap.values() for u, c in rows.items()}
        self.note_deleted(dst["db"], set(before) - set(after))  # by the file's tombstones and their cascades
        t = report.totals()
        changed = sum(1 for u in after if before.get(u) != after[u]) + len(set(before) - set(after))
        assert t["created"] + t["updated"] + t["conflicts_took_incoming"] + t["deleted"] <= changed, (
            "an import counted writes that changed no record", t)
        # property 3: the same file again changes nothing
        again = self.imported(j, data)
        t = again.totals()
        assert (t["created"], t["updated"], t["deleted"], t["conflicts"]) == (0, 0, 0, 0), (
            "re-import of the same file changed something", again.as_dict())
        assert snapshot(dst) == snap, "re-import of the same file changed the data"
        return report

    # -- the end
    def gossip(self):
        for _ in range(GOSSIP_ROUNDS):
            changed = False
            for i in range(self.n):
                for j in range(self.n):
                    if i != j:
                        t = self.sync(i, j, self.incremental_gossip).totals()
                        changed = changed or t["docs_written"] or t["conflicts"]
            if not changed:
                return
        raise AssertionError("gossip did not settle in %d rounds" % GOSSIP_ROUNDS)

    def losers(self):
        out = set()
        for env in self.envs:
            db = env["db"]
            c = db.plugin_sync_conflict
            for r in db(c).select(c.tablename, c.record_uuid, c.loser):
                wire = json.loads(r.loser)
                refs = {f for f, _, _ in references(db[r.tablename])} | {"deleted_rb"}
                content = {k: v for k, v in wire.items() if k not in LOCAL and k not in refs and k != "id@seq"}
                out.add((r.record_uuid, freeze(content)))
        return out


def assert_converged_as_clocks_allow(world):
    """Property 1: the same records with the same content (deleted included) everywhere, no reference
    dangling; and one modified_on, but where it is ahead of an instance's clock: there that
    instance holds its own dating of the version (a stamp within its limit, context.future_limit)."""
    snaps = [snapshot(env) for env in world.envs]
    limits = [world.clock(k) + datetime.timedelta(seconds=settings(env).clock_tolerance or 0)
              for k, env in enumerate(world.envs)]
    diffs = []
    for t in snaps[0]:
        for u in set().union(*(snap[t] for snap in snaps)):
            held = [snap[t].get(u) for snap in snaps]
            if any(h is None for h in held):
                diffs.append((t, u, "held by %s only" % [k for k, h in enumerate(held) if h is not None]))
                continue
            content = [{k: v for k, v in h.items() if k != "modified_on"} for h in held]
            if any(c != content[0] for c in content):
                diffs.append((t, u, [(k, [c.get(k) for c in content]) for k in content[0]
                                     if any(c.get(k) != content[0].get(k) for c in content)][:4]))
                continue
            stamps = [datetime.datetime.fromisoformat(h["modified_on"]) for h in held]
            top = max(stamps)
            if any(s != top and (top <= limit or s > limit) for s, limit in zip(stamps, limits)):
                diffs.append((t, u, "modified_on", [str(s) for s in stamps], "limits", [str(x) for x in limits]))
    assert not diffs, diffs[:5]
    for env in world.envs:
        assert dangling(env) == []


def check(world):
    envs = world.envs
    # 1. convergence
    assert_converged_as_clocks_allow(world)
    final = snapshot(envs[0])
    by_uuid = {u: (t, dict(c)) for t, rows in final.items() for u, c in rows.items()}
    for snap in map(snapshot, envs[1:]):  # the version's own stamp: an instance behind it holds its dating
        for t, rows in snap.items():
            for u, c in rows.items():
                by_uuid[u][1]["modified_on"] = max(by_uuid[u][1]["modified_on"], c["modified_on"])

    # 4. hard-deleted records come back only if edited after their deletion (as the editor's clock
    # stamped the version: an instance behind that clock dated it anew, and that dating travels)
    written = {}
    for _, u, frozen, mod, _ in world.versions:
        key = (u, tuple(kv for kv in frozen if kv[0] != "modified_on"))
        written[key] = max(written.get(key, mod), mod)

    def no_resurrection(state):
        for u, when in world.deleted.items():
            if u in state:
                mod = datetime.datetime.fromisoformat(state[u][1]["modified_on"])
                key = (u, tuple(kv for kv in freeze(state[u][1]) if kv[0] != "modified_on"))
                mod = max(mod, written.get(key, mod))
                assert mod > when, "hard-deleted record came back: %s %s (modified_on %s, deleted %s)" % (
                    state[u][0], u, mod, when)

    no_resurrection(by_uuid)

    # 2. nothing lost (references to records gone at the end aside: a deletion takes them out of lists)
    gone = set(world.deleted) - set(by_uuid)

    def canon(frozen):
        out = []
        for k, v in frozen:
            if k == "deleted_fk@uuid" and v.startswith("{"):
                v = json.dumps({f: x for f, x in json.loads(v).items() if x and x not in gone}, sort_keys=True)
                v = NULL if v == "{}" else v
            elif k.endswith("@uuid") and v.startswith("|"):
                kept = [x for x in v.split("|") if x and x not in gone]
                v = "|%s|" % "|".join(kept) if kept else NULL
            elif k.endswith("@uuid") and v in gone:
                v = NULL
            out.append((k, v))
        return tuple(out)

    world.versions = [(t, u, canon(f), m, step) for t, u, f, m, step in world.versions]
    world.superseded = {(u, canon(f)) for u, f in world.superseded}
    losers = {(u, canon(f)) for u, f in world.losers()}
    by_uuid = {u: (t, dict(canon(freeze(c)))) for u, (t, c) in by_uuid.items()}
    newest = {}
    for table, u, frozen, mod, step in world.versions:
        newest.setdefault(u, []).append((mod, frozen, step))
    lost = []
    # content is compared without modified_on: the same content written again elsewhere is not lost
    content = lambda frozen: tuple(kv for kv in frozen if kv[0] != "modified_on")  # noqa: E731
    kept = {(u, content(f)) for u, f in world.superseded | losers}
    replaced = {(u, content(f)) for u, f in world.superseded}  # (held under another dating, replaced)
    for table, u, frozen, mod, step in world.versions:
        if u in by_uuid and content(freeze(by_uuid[u][1])) == content(frozen):
            continue
        if (u, content(frozen)) in kept:
            continue
        lost.append((step, table, u, mod, dict(frozen)))
    assert not lost, "versions lost without a trace (step, table, uuid, modified_on, content): %s" % lost[:3]
    # the simpler check: a version strictly newer than every other version and every hard delete of
    # its record, that no instance replaced knowingly, is the content everywhere
    for u, vs in newest.items():
        top = max(m for m, _, _ in vs)
        tops = {f for m, f, _ in vs if m == top}
        if len(tops) == 1 and top > world.deleted.get(u, datetime.datetime.min) and (u, content(min(tops))) not in replaced:
            # (its content: an instance whose clock is behind its stamp dated it anew, see property 1)
            assert u in by_uuid and content(freeze(by_uuid[u][1])) in set(map(content, tops)), (
                "newest version of %s lost: %s, final %s" % (u, tops, by_uuid.get(u)))

    # 3. stale files: re-importing every file of the run into its receiver changes nothing
    for k, (j, data, _) in enumerate(world.files):
        t = world.imported(j, data).totals()
        assert (t["created"], t["updated"], t["deleted"], t["conflicts"]) == (0, 0, 0, 0), (
            "stale file %d (of %d) into instance %d changed something" % (k, len(world.files), j), t)
    assert snapshot(envs[0]) == final
    assert_converged_as_clocks_allow(world)


def reset(envs):
    """Empty every synced table and the plugin's bookkeeping: each example starts from scratch."""
    for env in envs:
        db = env["db"]
        for t in reversed(synced_tables(db, settings(env))):
            db(db[t]).delete()
        for t in ("plugin_sync_change", "plugin_sync_tombstone", "plugin_sync_conflict", "plugin_sync_log",
                  "sync_instance"):
            db(db[t]).delete()
        db.commit()


def test_convergence(new_instance, backend):
    envs = instances(new_instance, "a", "b", "c", "d")
    if backend == "sqlite":
        for env in envs:  # no fsync at every commit: thousands of commits per run
            env["db"].executesql("PRAGMA synchronous=OFF")

    @hsettings(max_examples=EXAMPLES[backend], derandomize=True, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
               phases=[Phase.explicit, Phase.generate] if os.environ.get("CONVERGENCE_NO_SHRINK") else list(Phase))
    @given(HISTORY)
    def run(history):
        n, incremental_gossip, shared_start, ops = history
        reset(envs)
        world = played(envs[:n], incremental_gossip, shared_start, ops)
        world.gossip()
        check(world)
        event("conflicts logged: %s" % min(len(world.losers()), 3))  # --hypothesis-show-statistics
        event("hard-deleted records: %s" % min(len(world.deleted), 3))

    for history in REGRESSIONS.values():
        run = example(history)(run)
    run()


def test_incremental_files_out_of_order(new_instance):
    """USB sticks arrive in any order: a file older than one merged after a gap must not revert it.

    The merge skips a version below its checkpoint of the sender (merged
    already), and a version the sender wrote after ours wins whatever the
    clocks say; so after a gap (the checkpoint cannot move) the tags of what
    that file wrote must not claim the sender had seen it: the older file,
    coming in next, would pass for its successor.
    """
    a, b = instances(new_instance, "a", "b")
    db = a["db"]
    org = db.org_organisation.insert(name="v1", modified_on=BASE_TIME)
    db.commit()
    import_from(b["db"], settings(b), export_bytes(db, settings(a)))
    peer = b["db"](b["db"].sync_instance.base_uuid == this_instance(db).base_uuid).select().first()
    since = peer.checkpoint_received
    files = []
    for k, name in enumerate(("v2", "v3")):
        db(db.org_organisation.id == org).update(name=name, modified_on=BASE_TIME + datetime.timedelta(seconds=k + 1))
        db.commit()
        out = io.BytesIO()
        since = export_to(db, settings(a), out, since=since)["until"]
        files.append(out.getvalue())
    dbb = b["db"]
    later = import_from(dbb, settings(b), files[1])  # v3 first: a gap, the checkpoint stays
    assert later.warnings and "missing" in later.warnings[-1]["message"]
    assert dbb(dbb.org_organisation).select().first().name == "v3"
    import_from(dbb, settings(b), files[0])  # then v2, older
    assert dbb(dbb.org_organisation).select().first().name == "v3"
    import_from(dbb, settings(b), export_bytes(db, settings(a)))
    assert_converged(a, b)
