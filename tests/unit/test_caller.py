"""Who asked: only our authorizer's `caller` names a caller; anything else is anonymous."""

from __future__ import annotations

from shared.runtime import _caller


def test_the_authorizers_key_name_is_the_caller() -> None:
    assert _caller({"caller": "alice"}) == "alice"


def test_no_authorizer_is_anonymous() -> None:
    assert _caller({}) == "anonymous"
    assert _caller({"caller": ""}) == "anonymous"
    assert _caller({"caller": ["alice"]}) == "anonymous"


def test_no_other_field_is_taken_as_an_identity() -> None:
    # functions/authorizer sets `caller` only; other names would come from something else in front
    assert _caller({"subject": "ops", "sub": "ops", "keyName": "ops"}) == "anonymous"


def test_in_iam_mode_no_authorizer_context_is_trusted() -> None:
    """A direct invoker can write requestContext.authorizer itself: in auth_mode = iam nobody is anyone."""
    assert _caller({"caller": "ops"}, "iam") == "anonymous"
    assert _caller({"caller": "ops"}, "api_key") == "ops"
