"""Registering a peer by its URL: ask it who it is before saving it (the Peers page's identity check).

The page types a URL, a login there and perhaps a base UUID; the peer's identity
endpoint (replicate.probe, the engine's transport) answers with its own.  Nothing
is saved unverified unless the administrator says so, and a typed base UUID must
be the one the peer answers with.  Returns plain values; the page fills its form.
"""
from typing import NamedTuple, Optional

from .errors import SyncError
from .peers import find_peer
from .replicate import probe


class Verdict(NamedTuple):
    """The answer: the peer's identity (dict) when it may be saved, else the form field at fault and why."""
    ident: Optional[dict] = None
    field: Optional[str] = None
    message: Optional[str] = None


def check_peer(db, settings, url, username, password, transport=None, typed_uuid=None, T=str):
    """Ask the peer at `url` who it is; a Verdict.  `T`: the page's translator (messages for people)."""
    if not url:
        return Verdict(field="url", message=_could_not(T, T("no URL: a file-only peer cannot be asked who it is")))
    try:
        ident = probe(db, settings, url, username, password, transport, retries=1)
    except SyncError as e:
        db.rollback()
        return Verdict(field="url", message=_could_not(T, e.describe()))
    typed = (typed_uuid or "").strip()
    if typed and typed != ident["base_uuid"]:
        return Verdict(field="base_uuid", message=T("the peer at %s answers as %s, not %s: check the base UUID") % (
            url, ident["base_uuid"], typed))
    if find_peer(db, ident["base_uuid"]):
        return Verdict(field="base_uuid", message=T("this peer (%s) is already registered") % ident["base_uuid"])
    return Verdict(ident=ident)


def _could_not(T, problem):
    return T("Could not verify the peer: %s. Fix the URL or login, or tick \"save unverified\".") % problem
