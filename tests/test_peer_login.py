"""Who a peer endpoint serves, decided by the engine (accounts.py, limits.py) as plain functions: the
controller only turns a Denied into its HTTP answer."""
import base64

import pytest
from synchelpers import settings

from applications.eden.modules.plugin_sync import accounts, limits
from applications.eden.modules.plugin_sync.errors import Denied


def _basic(email, password="pw"):
    return "Basic " + base64.b64encode(("%s:%s" % (email, password)).encode()).decode()


def _login(env, authorization, right, address="10.0.0.1"):
    db = env["db"]
    users = {r.email: r for r in db(db.auth_user).select()}
    email = accounts.basic_email(authorization)
    return accounts.peer_login(db, settings(env), authorization, address,
                               lambda: users.get(email) if right else None)


def test_basic_email_reads_the_header_and_never_raises():
    assert accounts.basic_email(_basic("peer@b.tl")) == "peer@b.tl"
    assert accounts.basic_email("Basic !!not base64!!") is None
    assert accounts.basic_email("Bearer abc") is None and accounts.basic_email(None) is None


def test_a_peer_endpoint_serves_members_of_the_peer_group_only(instance):
    db = instance["db"]
    peer = accounts.peer_account(db, settings(instance), "peer@b.tl", "a-long-peer-password")
    db.auth_user.insert(email="clerk@a.tl", first_name="Clerk")
    db.commit()
    assert _login(instance, _basic("peer@b.tl"), right=True).id == peer
    with pytest.raises(Denied) as e:
        _login(instance, None, right=False)
    assert e.value.status == 401 and "HTTP Basic credentials" in e.value.message
    with pytest.raises(Denied) as e:
        _login(instance, _basic("peer@b.tl", "wrong"), right=False)
    assert e.value.status == 401
    with pytest.raises(Denied) as e:
        _login(instance, _basic("clerk@a.tl"), right=True)
    assert e.value.status == 403 and "clerk@a.tl" in e.value.message


def test_guesses_are_held_per_address_not_for_the_peer_elsewhere(instance):
    db = instance["db"]
    accounts.peer_account(db, settings(instance), "peer@b.tl", "a-long-peer-password")
    db.commit()
    for _ in range(12):
        try:
            _login(instance, _basic("peer@b.tl", "guess"), right=False, address="10.9.9.9")
        except Denied as e:
            held = e
    assert held.status == 429 and "Retry-After" in held.headers
    assert _login(instance, _basic("peer@b.tl"), right=True, address="10.0.0.1") is not None


def test_a_push_needs_an_account_bound_to_an_instance(instance):
    db = instance["db"]
    uid = accounts.peer_account(db, settings(instance), "peer@b.tl", "a-long-peer-password")
    with pytest.raises(Denied) as e:
        accounts.sender_of(db, settings(instance), db.auth_user(uid))
    assert e.value.status == 403 and "bound to no peer instance" in e.value.message


@pytest.mark.parametrize("length, status", [(None, 411), ("abc", 411), (str(10 ** 12), 413)])
def test_a_body_of_unknown_or_excessive_length_is_denied_before_it_is_read(instance, length, status):
    with pytest.raises(Denied) as e:
        limits.check_body_size(settings(instance), length)
    assert e.value.status == status
    limits.check_body_size(settings(instance), "1000")
