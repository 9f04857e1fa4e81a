# -*- coding: utf-8 -*-
"""The host app's database, auth and sessions: a small Sahana-Eden-like instance.

EDEN_DB_URI points the instance at any database (default: SQLite in the
instance's own databases/ folder); EDEN_INSTANCE names it (cookie names, logs).
"""
import datetime
import os
import uuid as uuidlib

from gluon.tools import Auth, PluginManager, Service

EDEN_INSTANCE = os.environ.get("EDEN_INSTANCE", "a")
EDEN_DB_URI = os.environ.get("EDEN_DB_URI") or "sqlite://storage.sqlite"
EDEN_DB_POOL_SIZE = int(os.environ.get("EDEN_DB_POOL_SIZE") or (0 if EDEN_DB_URI.startswith("sqlite") else 5))

db = DAL(
    EDEN_DB_URI,
    pool_size=EDEN_DB_POOL_SIZE,
    folder=os.path.join(request.folder, "databases"),
    migrate=True,
    lazy_tables=False,
    # SQLite: the web server, the scheduler worker and long imports share one file; wait for
    # the write lock for 30 s instead of failing after the default 5 s
    driver_args={"timeout": 30} if EDEN_DB_URI.startswith("sqlite") else {},
)

# One cookie per instance: two instances on 127.0.0.1 (ports 8000, 8001) would
# otherwise overwrite each other's session cookie (browsers ignore the port).
_key_file = os.path.join(request.folder, "databases", "session.key")
if not os.path.exists(_key_file):
    with open(_key_file, "w") as _f:
        _f.write(uuidlib.uuid4().hex)
session.connect(
    request, response, masterapp="eden_%s" % EDEN_INSTANCE, cookie_key=open(_key_file).read().strip()
)

response.generic_patterns = ["*.json"] if request.is_local else []
service = Service()


# Tests only: EDEN_CLOCK_SKEW=<seconds> moves this instance's clock (a field laptop's drift).
EDEN_CLOCK_SKEW = datetime.timedelta(seconds=float(os.environ.get("EDEN_CLOCK_SKEW") or 0))


def utcnow():
    """Sahana stores UTC; request.utcnow does not exist outside requests (CLI, scheduler)."""
    return datetime.datetime.utcnow().replace(microsecond=0) + EDEN_CLOCK_SKEW


def new_uuid():
    return uuidlib.uuid4().urn


auth = Auth(db, controller="default", function="user")
auth.settings.extra_fields["auth_user"] = [
    # Eden's auth_user carries a uuid too: lets a created_by travel by identity
    Field("uuid", length=128, default=new_uuid, writable=False, readable=False),
]
auth.settings.registration_requires_approval = False
auth.settings.actions_disabled = ["register", "request_reset_password", "retrieve_username"]
auth.settings.allow_basic_login = True  # scripts and peers may use HTTP Basic
auth.define_tables(username=False, signature=False)


def meta_fields():
    """Sahana's s3_meta_fields: identity, provenance and soft deletion of a record."""
    return [
        Field("uuid", length=128, notnull=True, unique=True, default=new_uuid, writable=False, readable=False),
        Field("mci", "integer", default=0, writable=False, readable=False),
        Field("deleted", "boolean", default=False, writable=False, readable=False),
        Field("deleted_fk", "text", writable=False, readable=False),
        Field("deleted_rb", "integer", writable=False, readable=False),
        Field("created_on", "datetime", default=utcnow, writable=False, readable=False),
        Field("modified_on", "datetime", default=utcnow, update=utcnow, writable=False, readable=False),
        Field(
            "created_by", "reference auth_user", default=lambda: auth.user_id, writable=False, readable=False
        ),
        Field(
            "modified_by",
            "reference auth_user",
            default=lambda: auth.user_id,
            update=lambda: auth.user_id,
            writable=False,
            readable=False,
        ),
    ]


# Settings the plugin reads; a host app overrides them here, before models/plugin_sync.py.
plugins = PluginManager()
plugins.sync.owner = "Sahana Eden instance %s" % EDEN_INSTANCE
plugins.sync.contact = "admin@eden.local"
