# -*- coding: utf-8 -*-
"""plugin_sync's pages and endpoints: thin actions that parse the request, call the engine, return a dict.

The engine (modules/plugin_sync/) knows nothing of web2py's globals; everything
here is glue.  Admin pages need a member of the admin group (HTTP Basic works
too, for scripts); peer endpoints authenticate peers by their token.
"""
import plugin_sync
from plugin_sync import errors, fileio

# ---------------------------------------------------------------- pages (admin UI)


# ------------------------------------------------------ peer endpoints (network sync)
