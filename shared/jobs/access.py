"""Who may see a job: the caller that created it, or the configured admin caller (FM_ADMIN_CALLER).

The caller is the authorizer's key name (API Gateway), or "anonymous" when nothing in front of the
function says who asked (the local default, and auth_mode = iam, where the platform does not name the
invoking subject: see runtime._caller): anonymous work is then visible to anonymous callers, as before. Everything that takes an id (read, cancel, results,
files, batches) goes through `visible`, and answers 404 for another caller's work, exactly as for an
id that does not exist, so an id that leaks reveals nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared import errors, logs

if TYPE_CHECKING:
    from shared.runtime import Invocation

log = logs.get_logger("access")


def may_see(item: dict[str, Any] | None, inv: Invocation) -> bool:
    if item is None:
        return False
    admin = inv.settings.admin_caller
    return item.get("created_by", "") == inv.caller or (admin is not None and inv.caller == admin)


def owns(item: dict[str, Any], inv: Invocation) -> bool:
    """Whether this caller created the item. Presigned result URLs are bearer links that escape every
    later check, so they are minted for the owner only (the admin caller sees a result's size, not a link)."""
    return item.get("created_by", "") == inv.caller


def visible(item: dict[str, Any] | None, inv: Invocation, what: str, item_id: str) -> dict[str, Any]:
    """The item when this caller may see it; otherwise 404, the same answer as for an unknown id.
    An attempt on someone else's work is logged (caller and id only, never the owner or the content)."""
    if item is not None and not may_see(item, inv):
        log.warning("access to another caller's work refused", extra={"caller": inv.caller, "id": item_id,
                                                                      "kind": what})
        item = None
    if item is None:
        raise errors.NotFoundError(f"{what} {item_id} not found")
    return item
