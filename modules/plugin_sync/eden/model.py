"""Eden's data model for the engine: the synced tables defined through s3db, the settings' Eden defaults,
and Eden's super-entities, realms, paths, approver and validators described as one entities.Model."""
import threading

from gluon import current
from gluon.storage import Storage

from .. import affiliations, database_key, entities
from .. import install_schema as engine_install_schema, setup as engine_setup
from ..tables import DERIVED, EDEN_SITE_TABLES, NEVER_PREFIXES, never_reason, is_syncable, references, synced_tables
from . import derived
from .match import field_rule, matcher

_lock = threading.Lock()
_ready = set()  # (database, folder) whose schema this process has checked
_deployments = {}  # (template, enabled modules) -> Eden's default synced set, read once per process
_order = {}  # database -> its synced tables in export order, as this process found them with the tables defined
SUPER = "a super-entity of Eden's data model: the receiver makes its records from the instance records"
MAP_SETUP = "this site's map set-up (markers, projections, styles, menus), beside gis_config and the layers"


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
    shared by every app (and request) that thread serves.  In Eden: no lookup
    lists, and the synced tables left to prepare() (`eden_default`): Eden's
    default set is read from Eden's model, whose modules can be loaded only once
    all of Eden's models ran (inv's tables need the scheduler's, models/tasks.py).
    """
    settings = Storage(settings)
    if is_eden(db):
        if settings.get("tables") is None:
            settings.eden_default = True  # deployment_tables(), by prepare()
        if settings.get("lookup_tables") is None:
            settings.lookup_tables = []  # Eden's type lists (org_organisation_type...) sync with the rest
        if settings.get("match") == "eden" and settings.get("matcher") is None:
            settings.matcher = matcher
        if settings.get("key_rules") is None:
            settings.key_rules = field_rule  # Eden's S3Duplicate rules, after the unique keys (aliases.py)
    return settings


def deployment_tables(db):
    """Eden's default synced set: Storage(tables, left_out={table: (kind, reason)}), read from Eden's own model
    once per process and deployment (its template and enabled modules: every instance of one deployment has the
    same tables), in `db`, the database Eden serves in this request.

    Eden finds a table's model by its name's prefix, the module (`S3Model.table`: `current.models.<prefix>`), and
    defines a model's tables only where its module is enabled (`S3Model.__init__`: `has_module`): so the tables
    of the enabled modules are those of `s3db.load(module)` for each module of `deployment_settings.modules`
    with a model, named `<module>_...`.  Of those, every table with a uuid and a modified_on syncs but the
    never-list (and the super-entities), the derived ones (tables.DERIVED) and the map set-up (EDEN_SITE_TABLES);
    and the tables of Eden's core models about their records (ALONGSIDE: the trackables' presence log).
    Loading every enabled module costs seconds: once, here; a request defines only the synced tables (prepare).
    """
    deployment = current.deployment_settings
    key = (str(deployment.get_template()), tuple(deployment.modules))
    found = _deployments.get(key)
    if found is None:
        found = _deployments[key] = _read_deployment(db)
    return found


def _read_deployment(db):
    """deployment_tables' work: every enabled module with a model loaded, its tables sorted into synced and left
    out (with why)."""
    s3db, models = current.s3db, current.models
    modules = [m for m in current.deployment_settings.modules if isinstance(getattr(models, m, None), type(models))
               and not (m + "_").startswith(NEVER_PREFIXES)]  # (setup's tables need the scheduler's: not yet here)
    for module in modules:
        s3db.load(module)
    tables, left_out, derived = [], {}, dict(DERIVED)
    for name in db.tables:
        if name.split("_", 1)[0] not in modules:
            continue
        if db[name]._id.name != "id" and "instance_type" in db[name].fields:  # what s3db's super_entity() makes
            left_out[name] = ("never", SUPER)
        elif not is_syncable(db[name]):
            continue
        elif never_reason(name):  # shown on the dashboard under its module, with its reason
            left_out[name] = ("never", never_reason(name))
        elif name in derived:
            left_out[name] = ("derived", derived[name])
        elif name in EDEN_SITE_TABLES:
            left_out[name] = ("site-specific", MAP_SETUP)
        else:
            tables.append(name)
    tables += alongside(db, tables)
    return Storage(tables=sorted(tables), left_out=left_out, modules=modules)  # (one order in every process)


# Eden's tables of no module that hold data about the enabled modules' records: {table: the super-entity whose
# records it is about}.  A trackable's presence log (s3track: where a person, a staff member, an asset, a vehicle
# was reported, and when), kept by Eden's core `sit` models for every trackable table.
ALONGSIDE = {"sit_presence": "sit_trackable"}


def alongside(db, tables):
    """The tables of ALONGSIDE whose super-entity a table of `tables` is an instance of, defined through s3db."""
    get_config, out = current.s3db.get_config, []
    supers = set()
    for name in tables:
        found = get_config(name, "super_entity") or ()
        supers.update(found if isinstance(found, (list, tuple)) else [found])
    for name, super_entity in ALONGSIDE.items():
        if super_entity in supers and name not in tables and current.s3db.table(name) is not None \
                and is_syncable(db[name]):
            out.append(name)
    return out


def define(db, names):
    """Define these tables through s3db in this request (Eden's lazy tables); the names Eden does not have."""
    if not is_eden():
        return [name for name in names if name not in db.tables]
    s3db, missing = current.s3db, []
    for name in names:
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
    return missing


def module_names(db):
    """[(module, Eden's name of it)] of the enabled modules, in the deployment's order, then Eden's core models
    whose tables sync alongside (ALONGSIDE): the dashboard's groups; [] outside Eden."""
    if not is_eden(db):
        return []
    return [(m, str(info.get("name_nice") or m)) for m, info in current.deployment_settings.modules.items()] + [
        (prefix, name) for prefix, name in CORE_MODELS]


CORE_MODELS = (("sit", "Tracking"),)  # Eden's core models of ALONGSIDE's tables, as the dashboard names them


def load_tables(db, settings, only=None):
    """Define the synced tables (or those of them in `only`), and what Eden's models define along, in this
    request; the names missing.

    A table Eden does not have (a module switched off in the template) is
    reported, not silently dropped: pages and status list it as not here.
    """
    if not is_eden(db):
        return []
    wanted = [name for name in settings.get("tables") or () if only is None or name in only]
    missing = define(db, wanted)
    names = [name for name in wanted if name in db.tables]
    entities.attach(db, entity_model(db, names))
    # what they reference (org_region, auth_user, pr_pentity...): so that references travel with their uuid
    define(db, {target for name in names for _, target, _ in references(db[name])})
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
    or the template's own: _realm_rule), for the records made here and, where
    the table is configured `update_realm`, the records updated (as Eden's import
    and its forms set them); gis_location's path and Eden's other
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
                          realms_on_update=[name for name in realms if get_config(name, "update_realm")],
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
        with derived.stamps_kept(table):
            for k in range(0, len(uuids), 900):
                current.auth.set_realm_entity(table, table.uuid.belongs(uuids[k:k + 900]), force_update=True)
        return True
    return rule


def _on_demand(db, settings):
    """settings.define_tables for a request that defines its tables as the engine reads them: each call
    defines what no earlier call of the request did, and describes every table defined so far in the data
    model (a call with the same names, as a `changes` answer's upload check and its export make, costs nothing)."""
    defined = set()

    def define_tables(names):
        if not set(names) <= defined:
            defined.update(names)
            load_tables(db, settings, only=set(defined))
    return define_tables


def setup(db, settings):
    """The model's call, every request: once per process the schema (uuid indexes, change triggers, identity) of
    the synced tables.  Eden's default set waits for prepare(): its tables can be defined only after Eden's own
    models (the change triggers, when first put on a table, record its existing rows: nothing written before is
    missed)."""
    if database_key(db) in _ready or (settings.get("eden_default") and settings.get("tables") is None):
        return
    with _lock:
        if database_key(db) in _ready:
            return
        load_tables(db, settings)
        engine_setup(db, settings)  # uuid indexes, change triggers (idempotent), identity
        _ready.add(database_key(db))


def _default_set(db, settings):
    """Eden's default synced set into these settings, where they leave it to Eden (configure: eden_default)."""
    if settings.get("eden_default") and settings.get("tables") is None and is_eden(db):
        default = deployment_tables(db)
        settings.tables, settings.left_out = list(default.tables), dict(default.left_out)


def install_schema(db, settings):
    """The synced tables' schema (uuid indexes, change triggers), without an identity: for a database that is
    copied into several instances, each making its own identity (the launcher's first run, the tests' template),
    so that each copy starts with it rather than recording every table's rows at its first request."""
    _default_set(db, settings)
    load_tables(db, settings)
    engine_install_schema(db, settings)
    db.commit()


ON_DEMAND = "on demand"


def prepare(db, settings, tables=True):
    """Before the engine runs in a request (pages, endpoints, task, CLI), after Eden's models: Eden's default set
    in the settings (read once per process), the synced tables defined here, once per process the schema; the
    synced tables Eden does not have.  tables=False: for a request that reads no synced table's rows (the
    dashboard counts them in SQL, a job's progress, the log): the synced set by name only (`synced_order`, as
    this process found it with the tables defined), none defined: defining Eden's tables costs what Eden's own
    pages pay for their module's, for every enabled module at once (seconds).  tables=ON_DEMAND: as False, and
    the engine defines the tables it reads (tables.define_tables: a peer's `changes` reads those with changes in
    its range, a few of hundreds)."""
    _default_set(db, settings)
    key = database_key(db)
    if not tables or tables == ON_DEMAND:
        if key in _ready and key in _order and is_eden(db):
            settings.synced_order = list(_order[key])  # the synced set by name (tables.synced_tables), none defined
            if tables == ON_DEMAND:
                settings.define_tables = _on_demand(db, settings)
            return []
    missing = load_tables(db, settings)
    if key not in _ready:
        setup(db, settings)
    if key not in _order and is_eden(db):
        _order[key] = synced_tables(db, settings)
    return missing
