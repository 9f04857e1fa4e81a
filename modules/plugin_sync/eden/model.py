"""Eden's data model for the engine: the synced tables defined through s3db, the settings' Eden defaults,
and Eden's super-entities, realms, paths, approver and validators described as one entities.Model."""
import threading

from gluon import current
from gluon.storage import Storage

from .. import affiliations, database_key, entities
from .. import setup as engine_setup
from ..tables import DEFAULT_EDEN_TABLES, references
from . import derived
from .match import matcher

_lock = threading.Lock()
_ready = set()  # (database, folder) whose schema this process has checked


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


# Eden's text columns that hold its own ids (found in its models: the paths of gis_location and of
# pr_role, "|pe_id|pe_id|", and a presence's check-in link "tablename,record id"): never sent; the
# location path rebuilt on arrival (entities.rebuild_paths), a role's path left NULL for Eden's lazy
# rebuild (pr_rebuild_path), an interlock left out (no check-in link to a record of another instance)
LOCAL_TEXT = {"gis_location": ("path",), "pr_role": ("path",), "sit_presence": ("interlock",)}


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
    or the template's own: _realm_rule); gis_location's path and Eden's other
    text columns of local ids (LOCAL_TEXT); the approver of new records
    (approver); the fields' validators decide what is refused (validators.py);
    after the import, the affiliations and the fields onaccept computes
    (affiliations.py, derived.py).
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
    after = _after(affiliations.upkeep(db, names, is_eden), derived.upkeep(db, names, is_eden))
    return entities.Model(supers=supers, super_tables=super_tables, keys=keys, local=("realm_entity", "approved_by"),
                          realms=realms, realm_rule=_realm_rule(db, realms), realm_sql=realm_sql, paths=paths,
                          ownership=ownership, after=after, validates=True,
                          approver=approver, local_text=LOCAL_TEXT)


def _after(*hooks):
    """One Model.after of several per-table hooks (each with its `tables`), in their order."""
    def after(tablename, uuids):
        for hook in hooks:
            if tablename in hook.tables:
                hook(tablename, uuids)
    after.tables = set().union(*(hook.tables for hook in hooks))
    return after


def approver(table, account):
    """approved_by of a record the merge creates, as Eden's import sets it (S3XML.record: the file says nothing
    of approval, so `set_default_approver`) for the account that imports: without record approval that account
    (0 for none, as Eden's import with no one logged in); with it, Eden's own rule where that account is the
    one logged in (its approve permission, 0 under override, None for a table approved by hand), else None:
    the record waits for an approver, as one imported by an account that may not approve."""
    settings, auth = current.deployment_settings, current.auth
    if not settings.get_auth_record_approval():
        return account or 0
    user = getattr(auth, "user", None)
    if not (auth.override or (user and account and user.id == account)):
        return None
    field = table.approved_by
    default = field.default
    try:
        field.default = None
        auth.permission.set_default_approver(table)
        return field.default
    finally:
        field.default = default


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


def setup(db, settings):
    """The model's call, every request: settings, the task's registration, and once per process the schema."""
    if database_key(db) in _ready:
        return
    with _lock:
        if database_key(db) in _ready:
            return
        load_tables(db, settings)
        engine_setup(db, settings)  # uuid indexes, change triggers (idempotent), identity
        _ready.add(database_key(db))


def prepare(db, settings):
    """Before the engine runs in a request (pages, endpoints, task, CLI): the synced tables defined here."""
    missing = load_tables(db, settings)
    if database_key(db) not in _ready:
        setup(db, settings)
    return missing
