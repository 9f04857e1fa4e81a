# -*- coding: utf-8 -*-
"""The host app's home page and web2py Auth's login/logout."""


def index():
    from plugin_sync.peers import this_instance
    from plugin_sync.tables import synced_tables

    tables = synced_tables(db, plugin_sync_settings)
    counts = [(t, db(db[t].deleted != True).count()) for t in tables]
    return dict(counts=counts, identity=this_instance(db))


def user():
    return dict(form=auth())
