# -*- coding: utf-8 -*-
"""The host app's home page and web2py Auth's login/logout."""

TABLE_LABELS = {
    "org_organisation": "Organisations",
    "gis_location": "Locations",
    "org_office": "Offices",
    "pr_person": "Persons",
    "hrm_human_resource": "Staff & volunteers",
    "hms_hospital": "Hospitals",
    "event_incident": "Incidents",
    "doc_document": "Documents",
    "org_organisation_type": "Organisation types",
    "s3_setting": "Site settings",
    "gis_config": "GIS configuration",
}


def index():
    """This instance's identity, what it holds, and the way to the sync pages."""
    from plugin_sync.peers import this_instance
    from plugin_sync.tables import synced_tables

    response.title = "Home"
    synced = [(t, db(db[t].deleted != True).count()) for t in synced_tables(db, plugin_sync_settings)]
    local_names = list(plugin_sync_settings.lookup_tables or ()) + list(plugin_sync_settings.site_tables or ())
    local = [(t, db(db[t]).count()) for t in local_names if t in db.tables]
    return dict(identity=this_instance(db), synced=synced, local=local, labels=TABLE_LABELS,
                peers=db(db.sync_instance).count())


def user():
    """login, logout, profile, change_password (web2py Auth)."""
    from plugin_sync.peers import this_instance

    response.title = (request.args(0) or "login").replace("_", " ").capitalize()
    return dict(form=auth(), identity=this_instance(db))
