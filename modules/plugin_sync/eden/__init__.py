"""The Sahana Eden adapter: the one part of the plugin that reads web2py's `current`.

The engine (every other module of plugin_sync) takes a `db` and settings and
knows nothing of requests or of Eden.  These modules are what
models/plugin_sync.py, controllers/plugin_sync.py and the launcher call to fit
the engine into the host, one concern each:

- `model`: Eden's data model for the engine.  The synced set by default is
  every table of the enabled modules that holds entered data, read once per
  process from Eden's own model (`deployment_tables()`).  Eden defines its
  tables lazily (`current.s3db`): at model time `db.tables` holds a handful.
  `load_tables()` defines the synced set through `s3db.table(name)`, so every request, process
  and the scheduler see the same set, and `entity_model()` describes Eden's
  super-entities, realms and paths to the merge (entities.Model).  The model
  file only makes sure, once per process, that the schema is ready (`setup()`);
  the synced tables are loaded again only where they are used, by `prepare()`.
- `match`: Eden's own deduplicate rules asked for records known here under
  another uuid (match = "eden").
- `tasks`: what runs in Eden's processes: the peer role made the way Eden makes
  roles (`auth.s3_create_role` with a uid, never before Eden's first run made
  its own: Eden skips its prepopulate when any role exists), the scheduled sync
  as a task of Eden's own scheduler, the pages' jobs queued for its worker.
- `pages`: Eden's menus and the plugin's translations beside Eden's.

In a plain web2py host (no `current.s3db`) every function falls back to the
engine's own behaviour: all defined tables, roles by name, a `scheduler_task` row.
"""
