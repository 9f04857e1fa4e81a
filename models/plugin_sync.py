# -*- coding: utf-8 -*-
"""plugin_sync's model: its settings, its tables, and the one-time setup call.

Only declarations live here; the engine is modules/plugin_sync/, and what is
Sahana Eden's (its lazy tables, roles, scheduler) is in modules/plugin_sync/eden.py.
A host app overrides any setting in an earlier model (models run alphabetically;
in Sahana Eden: models/000_config.py, or a model of its own such as models/0_plugins.py):

    from gluon.tools import PluginManager
    plugins = PluginManager(); plugins.sync.owner = "HQ"; plugins.sync.tables = [...]
"""
from gluon.tools import PluginManager

from plugin_sync.eden import model as plugin_sync_eden_model
from plugin_sync.eden import pages as plugin_sync_eden_pages
from plugin_sync.eden import tasks as plugin_sync_eden_tasks
from plugin_sync.accounts import ADMIN_GROUP, PEER_GROUP

# gluon's PluginManager is a per-thread singleton whose __new__ passes the constructor's
# arguments on to object.__new__: PluginManager("sync", ...) raises TypeError unless this
# thread made one before.  Making it first without arguments (and without __init__, which
# would clear what the host set) works whether or not the host has set plugins.sync.*.
plugin_sync_plugins = PluginManager.__new__(PluginManager)
plugin_sync_settings = plugin_sync_eden_model.configure(PluginManager(
    "sync",
    owner="",  # this instance's owner, shown to peers
    contact="",  # contact details of this instance's owner
    tables=None,  # explicit list of synced tables (None: in Eden those of its enabled modules, eden/model.py, else every
    #               table with uuid + modified_on); never the tables of tables.NEVER_*, whatever it says
    exclude=[],  # more tables never to sync
    lookup_tables=None,  # identical on every site: not synced (None: DEFAULT_LOOKUP_TABLES; in Eden none)
    site_tables=None,  # site-specific: never synced (None: DEFAULT_SITE_TABLES)
    policy={},  # per-table conflict policy: newer (default) | this | other | master
    default_policy="newer",
    master=None,  # base_uuid of the instance that wins under the 'master' policy
    clock_tolerance=300,  # seconds a modified_on or deleted_on may lie in the future before it is suspect
    # records whose uuid is unknown here: "keys" (the one here with the same unique key: markers, catalogues,
    # types... every Eden prepopulates under uuids of its own), "eden" (the table's deduplicate rule first) or
    # "uuid" (a new record); a match makes the incoming uuid an alias of the local record (aliases.py)
    match="keys",
    # owners (owned_by_user, owned_by_group) a file names: False, the receiver decides them (a new record is
    # owned by the importing account, an existing one keeps its owners); True takes them, counted
    accept_owners=False,
    admin_group=ADMIN_GROUP,  # role (uid, or name) of who may use the pages: Eden's ADMIN
    peer_group=PEER_GROUP,  # role of the accounts peers log in with: the peer endpoints only
    # bounds on what a file or a peer may make this instance hold (see modules/plugin_sync/limits.py)
    max_request_size=256 << 20,  # bytes of one file received (push, upload, a peer's answer)
    max_inflated_size=2048 << 20,  # bytes of the CSV un-gzipped
    max_ratio=200,  # inflated / compressed, beyond 1 MiB
    max_cell_size=8 << 20,  # characters of one cell, and of one line of a file
    max_upload_size=64 << 20,  # bytes of one uploaded file in a zip bundle
    login_free_failures=5,  # wrong Basic logins of an account from one address (an address: 4x) before delays
    login_max_delay=300,  # seconds: the cap of the doubling delay after further failures
).sync, db)  # a copy: Eden's defaults where unset
# The singleton outlives the request (it is per thread, whatever app or request the thread
# serves next): forget this request's plugins.sync, so that every request takes the host's
# settings as its models set them now, never a value left over from an earlier one.
plugin_sync_plugins.__dict__.pop("sync", None)

db.define_table(
    "sync_instance",  # the blueprint's peer table: its name and columns are the contract
    Field("base_uuid", length=64, notnull=True, unique=True, label="Base UUID"),
    Field("owner", length=100),
    Field("contact", "text"),
    # http(s) only: the dashboard links it (a javascript: URL would be stored XSS)
    Field("url", length=255, default=None,
          requires=IS_EMPTY_OR(IS_URL(allowed_schemes=["http", "https"], prepend_scheme="http"))),
    Field("last_update", "datetime"),
    Field("sync_count", "integer", default=0),
    # below: beyond the blueprint (peer sync state); see README "Peers"
    Field("uuid", length=128, readable=False, writable=False),  # lets pydal's importer read our files
    Field("username", length=255, label="Login at the peer"),
    # kept as entered (not hashed: it is what we send to the peer); never shown back in full
    Field("password", "password", readable=False, requires=IS_LENGTH(255), label="Password at the peer"),
    Field("checkpoint_sent", "bigint", default=0, writable=False),
    Field("checkpoint_received", "bigint", default=0, writable=False),
    # a batched sync's place in the peer's range: "since:until:table:id" merged so far (batches.py)
    Field("checkpoint_resume", length=200, writable=False, readable=False),
    Field("clock_offset", "double", writable=False, label="Clock offset (s)"),
    # the local account this peer logs in with here: it may push only this instance's files
    Field("account", "reference auth_user", ondelete="SET NULL", label="Its account here",
          requires=IS_EMPTY_OR(IS_IN_DB(db, "auth_user.id", "%(email)s"))),
    Field("mode", length=8, default="both", requires=IS_IN_SET(("pull", "push", "both"))),
    Field("transport", length=8, default="http", requires=IS_IN_SET(("http", "xmlrpc"))),
    # not "interval": a reserved word that Eden's DAL (check_reserved) refuses
    Field("sync_interval", "integer", default=0, label="Sync every (minutes, 0 = manual)"),
    # the peer's changes waiting for us, as its last identity answer counted them (HTTP peers)
    Field("peer_pending", "integer", readable=False, writable=False),
    format="%(owner)s (%(base_uuid)s)",
)

db.define_table(
    "plugin_sync_identity",  # this instance: one row, made once; sync changes only exported_until
    Field("base_uuid", length=64, notnull=True, unique=True),
    Field("owner", length=100),
    Field("contact", "text"),
    Field("created_on", "datetime"),
    # the highest `until` any export handed out: no one can have merged our changes beyond it
    Field("exported_until", "bigint", default=0),
)

db.define_table(
    "plugin_sync_conflict",  # the losing side of every real conflict: nothing is lost
    Field("tablename", length=64),
    Field("record_uuid", length=128),
    Field("origin", length=64),  # base_uuid of the instance that sent the incoming version
    Field("resolution", length=16),  # kept_local | took_incoming
    Field("reason", length=64),
    Field("local_modified_on", "datetime"),
    Field("incoming_modified_on", "datetime"),
    Field("loser", "text"),  # JSON of the losing version (references as uuids)
    Field("winner", "text"),
    Field("created_on", "datetime"),
    Field("reviewed", "boolean", default=False),
    Field("restored_on", "datetime"),  # its losing version was put back (restore.py): no second restore offered
)

db.define_table(
    "plugin_sync_alias",  # another instance's uuid of a local record (match = "eden", aliases.py)
    Field("tablename", length=64, notnull=True),
    Field("alias_uuid", length=128, notnull=True),  # the uuid the other instance has the record under
    Field("local_uuid", length=128, notnull=True),
    Field("origin", length=64),  # base_uuid of the instance whose file it came in
    Field("created_on", "datetime", default=request.utcnow),
)

db.define_table(
    "plugin_sync_deferred",  # a batched sync's references whose targets come in a later batch (resolve.py)
    Field("peer", length=64),  # base_uuid of the sender
    Field("deferred", "text"),  # JSON of a resolve.Deferred
)

db.define_table(
    "plugin_sync_tombstone",  # hard deletes: keeps a deleted uuid from coming back
    Field("tablename", length=64),
    Field("record_uuid", length=128),
    Field("deleted_on", "datetime"),
    Field("origin", length=64),
    Field("seq", "bigint"),  # change sequence of the deletion (set by triggers, see changes.py)
)

db.define_table(
    "plugin_sync_log",  # one row per run: export, import, pull, push
    Field("started_on", "datetime"),
    Field("duration", "double"),
    Field("operation", length=16),
    Field("peer", length=64),
    Field("source", length=255),
    Field("dry_run", "boolean", default=False),
    Field("docs_read", "integer", default=0),
    Field("docs_written", "integer", default=0),
    Field("doc_write_failures", "integer", default=0),
    Field("conflicts", "integer", default=0),
    Field("result", length=16),
    Field("error", "text"),
    Field("report", "text"),  # the full JSON report
)

db.define_table(
    "plugin_sync_change",  # change capture: one row per changed record, kept by triggers (changes.py)
    Field("tablename", length=64, notnull=True),
    Field("record_id", "bigint", notnull=True),
    Field("seq", "bigint", notnull=True),  # SQLite: a local counter; PostgreSQL: the writer's txid
    # who wrote this version: the merge tags its writes with the sender's base_uuid; the
    # tag holds while origin_seq == seq (a later local write moves seq, not the tag)
    Field("origin", length=64),
    Field("origin_seq", "bigint"),
)

db.define_table(
    "plugin_sync_lock",  # one row per peer: the run against it now (no two overlap), and the last one
    Field("peer", length=64, notnull=True, unique=True),  # the peer's base_uuid
    Field("holder", length=128),  # host:pid:nonce of the running sync, NULL when free
    # the lease: the holder's heartbeat moves it on (lease.py, in the database's clock); past it, anyone takes over
    Field("expires_on", "datetime"),
    Field("last_started", "datetime"),  # the scheduler's "is it due?"
    Field("last_finished", "datetime"),
    Field("last_result", length=16),
)

db.define_table(
    "plugin_sync_throttle",  # wrong HTTP Basic logins at the peer endpoints, per account and per address
    Field("who", length=255, notnull=True, unique=True),  # "user:<email> ip:<address>", "ip:<address>", "ok:user:..."
    Field("failures", "integer", default=0),
    Field("blocked_until", "datetime"),
)

db.define_table(
    "plugin_sync_job",  # long work started from a page (preview, import, sync), run by Eden's scheduler (jobs.py)
    Field("kind", length=16, notnull=True),  # preview | import | sync
    Field("params", "text"),  # JSON: the kept file (key, name: stash.py) or the peer (id, mode)
    Field("state", length=16, default="queued"),  # queued | running | done | failed
    Field("report", "text"),  # JSON: the final report
    Field("error", "text"),  # JSON: what failed (table, line, column where known)
    Field("started_by", "integer"),  # auth_user id of the administrator (not a reference: never synced, kept)
    Field("created_on", "datetime"),
    Field("started_on", "datetime"),
    Field("finished_on", "datetime"),
    Field("worker", length=128),  # host:pid:nonce of the process running it (shown; its heartbeat says if it lives)
)

db.define_table(
    "plugin_sync_progress",  # a running job's progress and heartbeat, written apart from its transaction (progress.py)
    Field("job", "integer", unique=True),  # plugin_sync_job.id
    Field("state", "text"),  # JSON: phase, rows done, bytes read of the file's size, expected rows, times
    Field("beat", "double"),  # when it was written last (epoch seconds): a job whose beat stops is dead
)

db.define_table(
    "plugin_sync_upload",  # a file kept between two requests: a previewed upload, an export's file (stash.py)
    Field("upload_key", length=64, notnull=True, unique=True),  # not "key": a word Eden's DAL refuses
    Field("name", length=255),
    Field("size", "bigint"),
    Field("chunks", "integer"),
    Field("created_on", "datetime"),
)

db.define_table(
    "plugin_sync_upload_chunk",  # its content, CHUNK bytes a row (raw bytes, written and read by stash.py)
    Field("upload", length=64, notnull=True),  # plugin_sync_upload.upload_key
    Field("n", "integer", notnull=True),
    Field("data", "blob"),
)


def plugin_sync_scheduled():
    """The scheduled sync (Eden's scheduler runs it every minute): the peers that are due; {base_uuid: result}."""
    return plugin_sync_eden_tasks.scheduled(db, plugin_sync_settings)


def plugin_sync_job(job):
    """A page's long work (jobs.py), run by Eden's scheduler worker (or in the request when none is alive)."""
    return plugin_sync_eden_tasks.run_job(db, plugin_sync_settings, job)


# Eden: the task joins Eden's own task registry (deployment settings' tasks, run by its
# `settings_task`); the periodic scheduler_task row is made once by the plugin's controller.
plugin_sync_eden_tasks.register_task(db, plugin_sync_scheduled)
plugin_sync_eden_tasks.register_task(db, plugin_sync_job)
# once per process: the synced tables' uuid indexes and change triggers, this instance's identity
plugin_sync_eden_model.setup(db, plugin_sync_settings)
# Eden: an entry in the administrator's menu (Eden built it in its 00_utils model, before this one)
try:
    plugin_sync_eden_pages.add_main_menu(T)
except Exception:  # a host menu of another shape: the pages stay reachable by URL
    pass


class _PluginSyncCookies(response.cookies.__class__):
    """Session cookies go out HttpOnly (and Secure over https), whatever the host's session storage.

    gluon marks only the current session-id cookie HttpOnly; a cookie-stored
    session (session.connect(cookie_key=...)) and the id cookie of gluon's own
    first session.connect are set without it.  The flags are applied to every
    session_id_* / session_data_* cookie when the cookies are written out.
    """

    secure = False

    def values(self):
        for name in list(self.keys()):
            if name.startswith(("session_id_", "session_data_")):
                self[name]["httponly"] = True
                if self.secure:
                    self[name]["secure"] = True
        return super().values()


if not isinstance(response.cookies, _PluginSyncCookies):
    _ps_cookies = _PluginSyncCookies()
    _ps_cookies.update(response.cookies)
    _ps_cookies.secure = bool(request.is_https)
    response.cookies = _ps_cookies
