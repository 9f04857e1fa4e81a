"""The Sahana Eden adapter: the one module of the plugin that reads web2py's `current`.

The engine (every other module here) takes a `db` and settings and knows
nothing of requests or of Eden.  This module is what models/plugin_sync.py and
controllers/plugin_sync.py call to fit the engine into the host:

- Eden defines its tables lazily (`current.s3db`): at model time `db.tables`
  holds a handful.  `load_tables()` defines the synced set through
  `s3db.table(name)`, so every request, process and the scheduler see the same
  set.  The model only makes sure, once per process, that the schema is ready
  (uuid indexes, change triggers, identity: `setup()`); the synced tables are
  loaded again only where they are used (the plugin's controller, the scheduled
  task, the CLI) through `prepare()`.
- Roles: the peer role is made the way Eden makes roles, `auth.s3_create_role`
  with a uid (`ensure_peer_role()`), never before Eden's first run made its own
  (Eden skips its prepopulate when any role exists).
- The scheduled sync is a task of Eden's own scheduler: registered in Eden's
  task registry (`settings.tasks`, run by Eden's `settings_task`) and scheduled
  once through `current.s3task.schedule_task` (`ensure_task()`).

In a plain web2py host (no `current.s3db`) every function falls back to the
engine's own behaviour: all defined tables, roles by name, a `scheduler_task` row.
"""
import threading
import uuid

from gluon import current
from gluon.storage import Storage

from . import affiliations, database_key, entities, jobs
from . import setup as engine_setup
from .accounts import PEER_GROUP, PEER_ROLE_DESCRIPTION, PEER_ROLE_NAME, ensure_peer_role as engine_peer_role
from .accounts import find_role, peer_group
from .errors import MatchRuleError
from .log import briefly
from .replicate import RUN_TIMEOUT, run_due
from .tables import DEFAULT_EDEN_TABLES, references

TASK = "plugin_sync_scheduled"  # the task's name in Eden's registry and in scheduler_task.task_name
TASK_UUID = "plugin_sync_scheduled-v1"
JOB_TASK = "plugin_sync_job"  # the task that runs a page's long work (jobs.py), queued per job
TASK_PERIOD = 60  # seconds: the task syncs the peers that are due (sync_instance.sync_interval)

_lock = threading.Lock()
_ready = set()  # (database, folder) whose schema this process has checked
_roles = set()
_tasks = set()


def is_eden(db=None):
    """Is the host Sahana Eden (lazy tables through current.s3db), and `db` its database in this request?

    `current` is per thread, not per application: a thread that served Eden keeps
    its current.s3db while it runs another app (or another instance, in the tests).
    """
    if getattr(current, "s3db", None) is None or getattr(current, "deployment_settings", None) is None:
        return False
    return db is None or getattr(current, "db", None) is db


def configure(settings, db=None):
    """The settings this instance runs with: a copy of the host's, with Eden's defaults where unset.

    A copy, because gluon's PluginManager keeps one settings object per thread,
    shared by every app (and request) that thread serves.  In Eden: the synced
    tables (tables.DEFAULT_EDEN_TABLES) and no lookup lists.
    """
    settings = Storage(settings)
    if is_eden(db):
        if settings.get("tables") is None:
            settings.tables = list(DEFAULT_EDEN_TABLES)
        if settings.get("lookup_tables") is None:
            settings.lookup_tables = []  # Eden's type lists (org_organisation_type...) sync with the rest
        if settings.get("match") == "eden" and settings.get("matcher") is None:
            settings.matcher = matcher
    return settings


def load_tables(db, settings):
    """Define the synced tables (and what Eden's models define along) in this request; the names missing.

    A table Eden does not have (a module switched off in the template) is
    reported, not silently dropped: pages and status list it as not here.
    """
    if not is_eden(db):
        return []
    s3db = current.s3db
    missing = []
    for name in settings.get("tables") or ():
        if name in db.tables:
            continue
        if getattr(current, "db", None) is not db:  # s3db defines into current.db: not this one's
            missing.append(name)
            continue
        try:
            table = s3db.table(name)
        except AttributeError:
            table = None
        if table is None:
            missing.append(name)
    names = [name for name in settings.get("tables") or () if name in db.tables]
    entities.attach(db, entity_model(db, names))
    # what they reference (org_region, auth_user, pr_pentity...): so that references travel with their uuid
    for name in names:
        for _, target, _ in references(db[name]):
            if target not in db.tables:
                try:
                    s3db.table(target)
                except AttributeError:
                    pass
    return missing


def entity_model(db, names):
    """Eden's data model for the merge (entities.Model), read from s3db's configuration of the synced tables.

    Super-entities and the fields update_super copies into them (as update_super
    decides: the instance's `<super>_fields` mapping, else the fields both have,
    minus the super key and the super table's `no_shared_fields`); the super
    tables, those and any the settings list (what s3db's super_entity() makes:
    a table keyed on a field of its own, with an instance_type), never synced
    as tables; Eden's local ids (realm_entity, approved_by: left out of Eden's
    S3XML too); users named by email and roles by uuid (Eden's S3XML maps them
    so); realms of the tables with a realm_entity, by Eden's rule (realm_sql,
    or the template's own: _realm_rule); gis_location's path.
    """
    s3db = current.s3db
    get_config = s3db.get_config
    supers = {}
    for name in names:
        found = get_config(name, "super_entity") or ()
        table = db[name]
        for sname in found if isinstance(found, (list, tuple)) else [found]:
            stable = s3db.table(sname) if isinstance(sname, str) else sname
            if stable is None:
                continue
            tn, key = stable._tablename, stable._id.name
            protected = {key, "instance_type"} | set(get_config(tn, "no_shared_fields") or ())
            mapping = get_config(name, "%s_fields" % tn)
            if mapping:
                shared = {sf: f for sf, f in mapping.items() if sf not in protected and sf in stable.fields
                          and f in table.fields}
            else:
                shared = {f: f for f in stable.fields if f not in protected and f in table.fields}
            if "deleted" in stable.fields and "deleted" in table.fields:
                shared["deleted"] = "deleted"
            supers.setdefault(name, []).append(entities.Super(tn, key, shared))
    super_tables = [t for t in names if db[t]._id.name != "id" and "instance_type" in db[t].fields]  # listed
    realms = [name for name in names if "realm_entity" in db[name].fields]
    paths = {"gis_location": ("parent", "path")} if "gis_location" in names and {"parent", "path"} <= set(
        db.gis_location.fields) else {}
    keys = {"auth_user": "email"} if "auth_user" in db.tables and "email" in db.auth_user.fields else {}
    ownership = {"owned_by_group": "auth_group"} if "auth_group" in db.tables else {}
    return entities.Model(supers=supers, super_tables=super_tables, keys=keys, local=("realm_entity", "approved_by"),
                          realms=realms, realm_rule=_realm_rule(db, realms), realm_sql=realm_sql, paths=paths,
                          ownership=ownership, after=affiliations.upkeep(db, names, is_eden))


def realm_sql(db, table):
    """Eden's default realm of a row `t` of `table` as an SQL expression (None: no realm), for
    entities.set_realms: Eden's cascade (AuthS3.get_realm_entity), the record's own pe_id (but for
    persons), else its organisation's pe_id, else its site's person entity, else its group's."""
    fields, name = table.fields, table._tablename
    if "pe_id" in fields and name not in ("pr_person", "dvi_body"):
        return "t.pe_id"
    if "organisation_id" in fields and "org_organisation" in db.tables:
        return "(SELECT o.pe_id FROM %s o WHERE o.id = t.organisation_id)" % db.org_organisation._rname
    if "site_id" in fields and "org_site" in db.tables and "pr_pentity" in db.tables:
        # the site's instance record is a person entity of the same uuid
        return ("(SELECT p.pe_id FROM %s s JOIN %s p ON p.uuid = s.uuid WHERE s.site_id = t.site_id)"
                % (db.org_site._rname, db.pr_pentity._rname))
    if "group_id" in fields and "pr_group" in db.tables:
        return "(SELECT g.pe_id FROM %s g WHERE g.id = t.group_id)" % db.pr_group._rname
    return None


def _realm_rule(db, realms):
    """Eden's own realm function for the tables whose realm a template decides in Python (the deployment's
    `auth.realm_entity`, a table's `realm_entity` hook): None where Eden's default cascade holds everywhere
    (entities.set_realms computes that one set-based, by realm_sql)."""
    settings, get_config = current.deployment_settings, current.s3db.get_config
    deployment = callable(settings.get_auth_realm_entity())
    custom = {name for name in realms if deployment or callable(get_config(name, "realm_entity"))}
    if not custom:
        return None

    def rule(tablename, uuids):
        if tablename not in custom or not is_eden(db):
            return False
        table = db[tablename]
        for k in range(0, len(uuids), 900):
            current.auth.set_realm_entity(table, table.uuid.belongs(uuids[k:k + 900]), force_update=True)
        return True
    return rule


def _key(db):
    return database_key(db)


def setup(db, settings):
    """The model's call, every request: settings, the task's registration, and once per process the schema."""
    if _key(db) in _ready:
        return
    with _lock:
        if _key(db) in _ready:
            return
        load_tables(db, settings)
        engine_setup(db, settings)  # uuid indexes, change triggers (idempotent), identity
        _ready.add(_key(db))


def prepare(db, settings):
    """Before the engine runs in a request (pages, endpoints, task, CLI): the synced tables defined here."""
    missing = load_tables(db, settings)
    if _key(db) not in _ready:
        setup(db, settings)
    return missing


def ensure_peer_role(db, settings):
    """The peer role's id; in Eden made by auth.s3_create_role with its uid (once Eden's own roles exist)."""
    name = peer_group(settings)
    found = find_role(db, name)
    if found:
        return found
    auth = getattr(current, "auth", None)
    if is_eden(db) and hasattr(auth, "s3_create_role") and not db(db.auth_group).isempty():
        role_id = auth.s3_create_role(PEER_ROLE_NAME if name == PEER_GROUP else name, PEER_ROLE_DESCRIPTION,
                                      uid=name)
        db.commit()
        return role_id
    if is_eden(db):
        return None  # Eden's first run has not made its roles yet: do not pre-empt it
    return engine_peer_role(db, settings)


def scheduled(db, settings):
    """The scheduled task: sync the peers that are due; {base_uuid: "ok" | "error: ..."}."""
    prepare(db, settings)
    return run_due(db, settings)


def register_task(db, function):
    """Put a task (by its function's name) into Eden's task registry (deployment settings' tasks, run by Eden's
    `settings_task`)."""
    if not is_eden(db):
        return False
    current.deployment_settings.tasks[function.__name__] = function
    return True


def run_job(db, settings, job_id):
    """The job task (a page's long work, jobs.py): the synced tables defined, then the job run; its final state."""
    prepare(db, settings)
    return jobs.run(db, settings, int(job_id))


def start_job(db, settings, job_id, worker_alive):
    """Queue a job for Eden's scheduler worker; "queued", or "ran" when it ran here and now.

    Queued the way Eden schedules tasks (S3Task.schedule_task: a one-off scheduler_task row of
    Eden's `settings_task`; its run_async fails with this gluon and pydal), and the worker told
    to pick it up at once.  With no live worker (`worker_alive`: health.scheduler_state), in a
    host without Eden's S3Task, or where queueing fails, the job runs in the calling request:
    the page then answers when it is done, instead of waiting for a worker that is not there.
    """
    s3task = getattr(current, "s3task", None)
    if worker_alive and is_eden(db) and s3task is not None and "scheduler_task" in db.tables:
        try:
            task_id = s3task.schedule_task(JOB_TASK, function_name="settings_task",
                                           vars={"taskname": JOB_TASK, "job": int(job_id)}, repeats=1,
                                           retry_failed=0, timeout=task_timeout(settings), ignore_duplicate=True,
                                           user_id=False)
            if "scheduler_worker" in db.tables:  # the ticker assigns it now, not at its next round
                db(db.scheduler_worker.is_ticker == True).update(status="PICK")  # noqa: E712 (pydal)
            db.commit()
            return "queued"
        except Exception:  # the scheduler's tables locked or missing: run it here rather than not at all
            db.rollback()
    run_job(db, settings, job_id)
    return "ran"


def task_timeout(settings):
    """A run may take long (a first full sync): the scheduler's timeout (the lock is a lease: lease.py)."""
    return RUN_TIMEOUT


def ensure_task(db, settings):
    """The periodic scheduler_task row (every minute, forever, failures retried), created once.

    In Eden through its S3Task (`schedule_task` of Eden's `settings_task` with
    taskname=plugin_sync_scheduled); in a plain host a row for the task itself.
    Returns the row's id, or None where no scheduler is defined.
    """
    if "scheduler_task" not in db.tables:
        return None
    task = db.scheduler_task
    row = db(task.task_name == TASK).select(task.id, limitby=(0, 1)).first()
    if row:
        return row.id
    s3task = getattr(current, "s3task", None)
    if is_eden(db) and s3task is not None:
        task_id = s3task.schedule_task(TASK, function_name="settings_task", vars={"taskname": TASK},
                                       period=TASK_PERIOD, repeats=0, retry_failed=-1,
                                       timeout=task_timeout(settings), ignore_duplicate=True, user_id=False)
        db(task.id == task_id).update(uuid=TASK_UUID, prevent_drift=True)  # unique: one row, however many ask
    else:
        task_id = task.insert(function_name=TASK, task_name=TASK, uuid=TASK_UUID, args="[]", vars="{}",
                              period=TASK_PERIOD, repeats=0, retry_failed=-1, timeout=task_timeout(settings),
                              prevent_drift=True)
    db.commit()
    return task_id


def once_per_process(db, settings):
    """The controller's call: the peer role and the scheduled task, checked once per process."""
    key = _key(db)
    _once(db, key, _roles, lambda: ensure_peer_role(db, settings))
    _once(db, key, _tasks, lambda: ensure_task(db, settings))


def _once(db, key, done, ensure):
    """Run `ensure` until it succeeds once for `key`.  It may not break, nor hold up, the request it
    runs in: a failure (two processes at once), or SQLite's write lock held by an import for more
    than a moment (log.briefly), is retried at the next request."""
    if key in done:
        return
    made = []
    try:
        if briefly(db, lambda: made.append(ensure())) and made[0]:
            done.add(key)
    except Exception:
        db.rollback()


# ------------------------------------------------------------------ menus
PAGES = (("index", "Dashboard"), ("export", "Export"), ("import_and_sync", "Import"), ("instances", "Peers"),
         ("log", "Log"), ("conflicts", "Conflicts"))


def add_main_menu(T):
    """Eden's main menu: a "Sync (plugin)" entry under the administrator's menu (built by Eden's 00_utils model).

    Only where Eden built that menu for an ADMIN (its menu_admin is None otherwise); no Eden file changes.
    """
    main = (getattr(current, "menu", None) or {}).get("main")
    auth = getattr(current, "auth", None)
    if main is None or auth is None or not hasattr(auth, "s3_has_role") or not auth.s3_has_role("ADMIN"):
        return False
    try:
        from s3layouts import MM
    except ImportError:
        return False
    for item in main.components:
        if getattr(item, "controller", None) == "admin" and not any(
                getattr(c, "controller", None) == "plugin_sync" for c in item.components):
            item.append(_shown(MM(T("Sync (plugin_sync)"), c="plugin_sync", f="index")))
            return True
    return False


def set_options_menu(T):
    """Eden's left-hand options menu on the plugin's pages (Eden has none for an unknown controller)."""
    menu = getattr(current, "menu", None)
    if menu is None or "main" not in menu:
        return False
    try:
        from s3layouts import M
    except ImportError:
        return False
    menu.options = _shown(M(c="plugin_sync")(*[_shown(M(T(label), f=f)) for f, label in PAGES]))
    return True


def _shown(item):
    """Eden hides (check_active) and refuses (check_permission) menu items of controllers that are not Eden modules
    (settings.has_module): the
    plugin's pages check the admin role themselves, so its items are shown to whoever sees the menu."""
    item.check_active = lambda request=None: True
    item.check_permission = lambda: True
    return item


# ------------------------------------------------------------------ translations
def add_translations(T, app_folder):
    """The plugin's own strings in the language asked for: languages/plugin_sync/<lang>.py of the application.

    web2py has one language file per application (Eden's languages/es.py...), which the plugin
    must not edit. The plugin's file is merged into a private copy of T's table for this request
    only (with a private cache: web2py's is shared by every request of that language file), where
    Eden has no translation of a string (or only the string itself, as web2py records unknown ones).
    Returns the file used, or None.
    """
    import os
    from gluon.languages import read_dict
    asked = [getattr(T, "accepted_language", None)] + list(getattr(T, "requested_languages", None) or ())
    for lang in [str(a).lower() for a in asked if a]:
        for name in (lang, lang[:2]):
            path = os.path.join(app_folder, "languages", "plugin_sync", "%s.py" % name)
            if os.path.isfile(path):
                table = dict(T.t)
                for key, value in read_dict(path).items():
                    if table.get(key) in (None, key):
                        table[key] = value
                T.t, T.cache = table, ({}, threading.RLock())
                return path
    return None


METHOD = Storage(CREATE="create", UPDATE="update", DELETE="delete", MERGE="merge")  # S3ImportItem.METHOD
POLICY = Storage(THIS="THIS", OTHER="OTHER", NEWER="NEWER", MASTER="MASTER")  # S3ImportItem.POLICY


class _Job(object):
    """What a deduplicate rule reads of Eden's S3ImportJob: the job's other items (org's rule looks for a
    parent branch among them), its strategy and policies.  A sync offers one row at a time: no others."""

    def __init__(self):
        self.items, self.directory, self.references = Storage(), Storage(), []
        self.strategy = list(METHOD.values())
        self.update_policy = self.conflict_policy = POLICY.OTHER
        self.mandatory_fields, self.error, self.element = Storage(), None, None


class _Item(object):
    """An incoming row in the shape of Eden's S3ImportItem (modules/s3/s3import.py), as deduplicate rules
    read it (table, data, job, references, components...) and set it (id, method; error and accepted
    when a rule rejects the row).  What only an S3XML import has (its XML element) is None."""

    METHOD, POLICY = METHOD, POLICY

    def __init__(self, table, data, references=()):
        self.job = job = _Job()
        self.table, self.tablename, self.data = table, table._tablename, Storage(data)
        self.item_id = uuid.uuid4()
        self.uid = data.get("uuid")
        self.id, self.method, self.original, self.element, self.parent = None, METHOD.CREATE, None, None, None
        self.components, self.load_components, self.load_references, self.update = [], [], [], []
        self.references = list(references)
        self.skip, self.lock, self.conflict, self.modified, self.mci = False, False, False, True, 2
        self.error, self.accepted, self.permitted, self.committed = None, None, False, False
        self.mtime = data.get("modified_on")
        self.strategy, self.update_policy, self.conflict_policy = job.strategy, job.update_policy, job.conflict_policy
        self.onvalidation = self.onaccept = None
        job.items[self.item_id] = self


def _reference(field, target, local_id, uid):
    """One of S3ImportItem.references: the field and the record it names (here already: its local id)."""
    return Storage(field=field, element=None,
                   entry=Storage(tablename=target, element=None, uid=uid, id=local_id, item_id=None))


def matcher(tablename, rows, resolve):
    """{incoming uuid: local uuid} of the rows ({column: cell}) that the table's own `deduplicate` rule
    (the one Eden's S3XML import asks, often S3Duplicate) matches with a record here (match = "eden").

    A rule that fails on a row (it needs what only an S3XML import has) is a MatchRuleError naming
    the table, the rule and the row's uuid: the import stops, nothing written, rather than a row
    silently merged as new or an error without a place.
    """
    from .fileformat import NULL, UUID

    s3db = current.s3db
    rule = s3db.get_config(tablename, "deduplicate")
    if not rule:
        return {}
    table = s3db.table(tablename)
    refs = [(f, target) for f, target, is_list in references(table) if not is_list]
    ids = {f: resolve(target, {r.get(f + UUID) for r in rows} - {None, NULL, ""}) for f, target in refs}
    found = {}
    for row in rows:
        data, links = _typed(table, row), []
        for f, target in refs:
            data[f] = ids[f].get(row.get(f + UUID))
            if data[f] is not None:
                links.append(_reference(f, target, data[f], row.get(f + UUID)))
        item = _Item(table, data, links)
        try:
            rule(item)
        except Exception as e:
            raise MatchRuleError(
                'Eden\'s deduplicate rule of %s (%s) cannot be used by match = "eden": it failed on record %s '
                '(%s: %s); nothing was written.  Set plugins.sync.match = "uuid", or give the table a rule '
                'that needs no S3XML import' % (tablename, _rule_name(rule), row.get("uuid"), type(e).__name__,
                                                (str(e).splitlines() or [""])[0][:200]),
                table=tablename, uuid=row.get("uuid")) from None
        if item.id:
            found[row["uuid"]] = item.id
    if not found:
        return {}
    here = current.db(table._id.belongs(set(found.values()))).select(table._id, table.uuid)
    uuids = {r[table._id.name]: r.uuid for r in here}
    return {u: uuids[i] for u, i in found.items() if i in uuids}


def _rule_name(rule):
    """A deduplicate rule as its source names it: org_OrganisationDuplicate.duplicate, S3Duplicate..."""
    owner = getattr(rule, "__self__", None)
    name = getattr(rule, "__qualname__", None) or type(rule).__name__
    return "%s.%s" % (owner.__name__, rule.__name__) if isinstance(owner, type) else name


def _typed(table, row):
    """The cells of a file's row as the values a deduplicate rule compares (dates as dates...); a cell
    that does not read is left out (the merge itself reports it)."""
    from .dialect import char_bool
    from .fileformat import NULL
    from .values import is_text, parser

    data = {}
    for f, cell in row.items():
        if f not in table.fields:
            continue
        read = parser(table[f].type, char_bool(table._db))
        try:
            data[f] = None if cell == NULL else cell if is_text(read) else read(cell)
        except ValueError:
            pass
    return data

