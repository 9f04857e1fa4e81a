"""Eden's menus with the plugin's pages, and the plugin's translations beside Eden's own."""
import os
import threading

from gluon import current
from gluon.languages import read_dict

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


def add_translations(T, app_folder):
    """The plugin's own strings in the language asked for: languages/plugin_sync/<lang>.py of the application.

    web2py has one language file per application (Eden's languages/es.py...), which the plugin
    must not edit. The plugin's file is merged into a private copy of T's table for this request
    only (with a private cache: web2py's is shared by every request of that language file), where
    Eden has no translation of a string (or only the string itself, as web2py records unknown ones).
    Returns the file used, or None.
    """
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
