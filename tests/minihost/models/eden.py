# -*- coding: utf-8 -*-
"""The host app's schema: the shapes of Sahana Eden's tables that sync meets.

A lookup list (org_organisation_type), a location hierarchy with a self
reference (gis_location.parent), chains of references (hospital -> organisation
-> type), a list:reference (event_incident.organisation_ids), an upload field
(doc_document.file) and two site-specific tables that must never leave the
instance (s3_setting, gis_config with API keys).

And a small data model of Eden's kind, described to the engine (entities.Model,
attached at the end): a super-entity (pr_pentity, keyed on pe_id: organisations
and offices are person entities, and contacts hang off them), a realm rule (an
organisation's realm is its own entity, an office's its organisation's) and a
hierarchy (gis_location.path, the chain of local ids).  An organisation or
office made here gets its super record at once, as Eden's onaccept does it
(update_super below); realms and paths are made by the sync only.
"""
from plugin_sync import entities

GIS_LEVELS = ("L0", "L1", "L2", "L3", "L4", "L5")

db.define_table(
    "org_organisation_type",
    Field("name", length=128, notnull=True),
    Field("comments", "text"),
    *meta_fields(),
    format="%(name)s",
)

# The super-entity, as Eden's s3db.super_entity() defines one: keyed on its own field, no meta fields.
db.define_table(
    "pr_pentity",
    Field("pe_id", "id"),
    Field("deleted", "boolean", default=False),
    Field("instance_type", length=64),
    Field("uuid", length=128),
)

db.define_table(
    "org_organisation",
    Field("pe_id", "reference pr_pentity", ondelete="RESTRICT", writable=False, readable=False),
    Field("realm_entity", "integer", writable=False, readable=False),
    Field("name", length=255, notnull=True, requires=IS_NOT_EMPTY()),
    Field("acronym", length=64),
    Field("organisation_type_id", "reference org_organisation_type"),
    Field("country", length=2),
    Field("website", length=255),
    Field("phone", length=64),
    Field("email", length=255),
    Field("comments", "text"),
    *meta_fields(),
    format="%(name)s",
)

db.define_table(
    "gis_location",
    Field("name", length=255, notnull=True, requires=IS_NOT_EMPTY()),
    Field("level", length=2, requires=IS_EMPTY_OR(IS_IN_SET(GIS_LEVELS))),
    Field("parent", "reference gis_location"),
    Field("path", length=256, writable=False, readable=False),  # "1/5/42": local ids, rebuilt
    Field("code", length=64),
    Field("lat", "double"),
    Field("lon", "double"),
    Field("population", "integer"),
    Field("comments", "text"),
    *meta_fields(),
    format="%(name)s",
)

db.define_table(
    "org_office",
    Field("pe_id", "reference pr_pentity", ondelete="RESTRICT", writable=False, readable=False),
    Field("realm_entity", "integer", writable=False, readable=False),
    Field("name", length=255, notnull=True, requires=IS_NOT_EMPTY()),
    Field("organisation_id", "reference org_organisation"),
    Field("location_id", "reference gis_location"),
    Field("phone", length=64),
    Field("comments", "text"),
    *meta_fields(),
    format="%(name)s",
)

db.define_table(
    "pr_person",
    Field("first_name", length=128, notnull=True, requires=IS_NOT_EMPTY()),
    Field("last_name", length=128),
    Field("gender", length=16, requires=IS_EMPTY_OR(IS_IN_SET(("female", "male", "other")))),
    Field("date_of_birth", "date"),
    Field("email", length=255),
    Field("phone", length=64),
    Field("location_id", "reference gis_location", label="Home location"),
    Field("lat", "double"),
    Field("lon", "double"),
    *meta_fields(),
    format="%(first_name)s %(last_name)s",
)

db.define_table(
    "pr_contact",  # hangs off a person entity: its pe_id travels as the super record's uuid
    Field("pe_id", "reference pr_pentity", ondelete="RESTRICT"),
    Field("contact_method", length=16, requires=IS_IN_SET(("EMAIL", "SMS", "PHONE"))),
    Field("value", length=255),
    *meta_fields(),
)

db.define_table(
    "hrm_human_resource",
    Field("person_id", "reference pr_person", notnull=True),
    Field("organisation_id", "reference org_organisation"),
    Field("type", length=16, requires=IS_IN_SET(("staff", "volunteer"))),
    Field("job_title", length=128),
    Field("start_date", "date"),
    *meta_fields(),
)

db.define_table(
    "hms_hospital",
    Field("name", length=255, notnull=True, requires=IS_NOT_EMPTY()),
    Field("code", length=64),
    Field("organisation_id", "reference org_organisation"),
    Field("location_id", "reference gis_location"),
    Field("facility_type", length=64),
    Field("status", length=64),
    Field("total_beds", "integer"),
    Field("lat", "double"),
    Field("lon", "double"),
    Field("comments", "text"),
    *meta_fields(),
    format="%(name)s",
)

db.define_table(
    "event_incident",
    Field("name", length=255, notnull=True, requires=IS_NOT_EMPTY()),
    Field("start_date", "datetime"),
    Field("location_id", "reference gis_location"),
    Field("organisation_ids", "list:reference org_organisation", label="Responding organisations"),
    Field("closed", "boolean", default=False),
    Field("comments", "text"),
    *meta_fields(),
    format="%(name)s",
)

db.define_table(
    "doc_document",
    Field("name", length=255, notnull=True, requires=IS_NOT_EMPTY()),
    Field("file", "upload", autodelete=False),
    Field("organisation_id", "reference org_organisation"),
    Field("date", "date"),
    Field("comments", "text"),
    *meta_fields(),
    format="%(name)s",
)

# Site-specific: they carry uuids like every Sahana table, and still must never sync.
db.define_table(
    "s3_setting",
    Field("name", length=128, notnull=True),
    Field("value", "text"),
    *meta_fields(),
)

db.define_table(
    "gis_config",
    Field("name", length=128, notnull=True),
    Field("google_maps_key", length=255),
    Field("bing_maps_key", length=255),
    Field("default_location_id", "reference gis_location"),
    *meta_fields(),
)


def update_super(table, record_id):
    """What Eden's s3db.update_super does for a record made here: its super record (same uuid), linked."""
    row = table[record_id]
    if row.pe_id is None:
        pe_id = db.pr_pentity.insert(uuid=row.uuid, instance_type=table._tablename, deleted=row.deleted)
        db(table.id == record_id).update(pe_id=pe_id, modified_on=row.modified_on, modified_by=row.modified_by)


for _name in ("org_organisation", "org_office"):  # (the merge writes in SQL: its hooks make its super records)
    db[_name]._after_insert.append(lambda fields, record_id, table=db[_name]: update_super(table, record_id))


def realm_sql(db, table):
    """The minihost's realm rule, as SQL of a row `t`: an organisation's is its own entity, an office's its
    organisation's."""
    if table._tablename == "org_organisation":
        return "t.pe_id"
    return "(SELECT o.pe_id FROM %s o WHERE o.id = t.organisation_id)" % db.org_organisation._rname


entities.attach(db, entities.Model(
    supers={name: [entities.Super("pr_pentity", "pe_id", {"deleted": "deleted"})]
            for name in ("org_organisation", "org_office")},
    local=("realm_entity",),
    realms=("org_organisation", "org_office"),
    realm_sql=realm_sql,
    paths={"gis_location": ("parent", "path")},
))
