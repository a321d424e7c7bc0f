"""The DynamoDB control store: the sample's control table, read and written through a boto3 client.

Table: partition key ``id`` (Number). Row ``id = 1`` is the sample's row (``running`` BOOL, ``waitseconds``
N); more rows are more schedules, with the optional attributes of :mod:`subminute.control.rows`. The
controller's own bookkeeping (lease, hand-off) lives in one extra item, ``id = 0``, so that the rows users
edit are never rewritten by the controller; a second one, ``id = -1``, counts the changes subminute writes.
Writes from the CLI change only the attributes they name.

Reading the rows costs the same whatever their number (:meth:`DynamoStore.version`): the controller reads
two small items a second (row 1, which the original sample's users edit in the console, and the change
counter, which ``subminute aws set/start/stop`` bump), one read unit together; it scans the whole table
only when one of them changed, and once a minute (``RESCAN_S``) for rows other than 1 edited by hand.

Numbers come back as :class:`~decimal.Decimal` (as DynamoDB returns them); :func:`parse_row` makes them
plain. Names are unique: ``put`` and ``update`` scan the table for a row with the same name before they
write. DynamoDB has no transaction spanning a scan and a write, so two writers racing to give one name to
two rows could both succeed; the controller then disables the later one (``status`` shows it), as it
does any duplicate written by hand. The client is passed in (``boto3.client("dynamodb")``); only botocore's error classes are imported.
Standard library plus boto3: this module is bundled into the inline Lambda code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..control.base import MAX_TOKEN, ControlStore, Lease, check_unique_name, parse_lease
from ..control.handoff import Handoff
from ..control.rows import apply_changes, normalize_row, parse_row, plain
from ..errors import NotFoundError, StoreError

__all__ = ["BOOKKEEPING_ID", "RESCAN_S", "VERSION_ID", "DynamoStore", "from_attr", "to_attr"]

BOOKKEEPING_ID = 0  # the item holding lease and hand-off; never a schedule (ids start at 1)
VERSION_ID = -1  # the item whose ``rows_version`` subminute's writes bump
RESCAN_S = 60  # rows edited by hand (other than row 1) are seen within this


def _number(value: float | Decimal) -> str:
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = value.to_integral_value()
    return str(value)


def to_attr(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value (bool before int: a bool is an int in Python)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float, Decimal)):
        return {"N": _number(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attr(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [to_attr(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def from_attr(attr: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as Python (numbers as Decimal, as boto3's resource layer does)."""
    (kind, value), = attr.items()
    if kind == "N":
        return Decimal(value)
    if kind in ("S", "BOOL"):
        return value
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [from_attr(v) for v in value]
    if kind in ("SS", "BS", "B"):
        return value
    if kind == "NS":
        return [Decimal(v) for v in value]
    raise ValueError(f"unknown DynamoDB attribute type {kind}")


def _item(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: from_attr(v) for k, v in raw.items()}


def _key(schedule_id: int) -> dict[str, Any]:
    return {"id": {"N": str(schedule_id)}}


class DynamoStore(ControlStore):
    """The control table in DynamoDB. ``client`` is a boto3 DynamoDB client; ``table`` its name."""

    def __init__(self, client: Any, table: str, *, consistent: bool = False) -> None:
        self.client = client
        self.table = table
        self.consistent = consistent  # strongly consistent scans cost twice as much
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

    # -- calls -----------------------------------------------------------------------------------------
    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self.client, op)(TableName=self.table, **kwargs)
            return result
        except self._errors as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise
            raise StoreError(f"DynamoDB {op} on table {self.table}: {exc}") from exc

    def _conditional(self, op: str, **kwargs: Any) -> dict[str, Any] | None:
        """A conditional write: the response, or ``None`` when the condition did not hold."""
        try:
            return self._call(op, **kwargs)
        except self._errors as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise

    # -- control rows ----------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"ConsistentRead": self.consistent}
        while True:
            page = self._call("scan", **kwargs)
            items.extend(_item(raw) for raw in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        rows = [row for row in items if plain(row.get("id")) not in (BOOKKEEPING_ID, VERSION_ID)]
        return sorted(rows, key=_id_order)

    def version(self) -> Any:
        """A change token from two small items (one read unit, whatever the number of rows): subminute's
        change counter and row 1 as it is, with the minute, so that a row edited by hand is seen within
        ``RESCAN_S``. ``None`` (read the rows) if DynamoDB left a key unprocessed."""
        try:
            found = self.client.batch_get_item(RequestItems={self.table: {
                "Keys": [_key(VERSION_ID), _key(1)], "ConsistentRead": self.consistent}})
        except self._errors as exc:
            raise StoreError(f"DynamoDB batch_get_item on table {self.table}: {exc}") from exc
        if found.get("UnprocessedKeys"):
            return None
        items = {str(item["id"]["N"]): item for item in found.get("Responses", {}).get(self.table, [])}
        counter = items.get(str(VERSION_ID), {}).get("rows_version", {}).get("N")
        row_1 = json.dumps(items.get("1"), sort_keys=True, default=repr)  # (a binary value written by hand)
        return (counter, row_1, int(time.time() // RESCAN_S))

    def _changed(self) -> None:
        """Bump the change counter: a running controller reads the rows again within its tick."""
        self._call("update_item", Key=_key(VERSION_ID), UpdateExpression="ADD rows_version :one",
                   ExpressionAttributeValues={":one": to_attr(1)})

    def get(self, schedule_id: int) -> dict[str, Any]:
        raw = self._call("get_item", Key=_key(schedule_id), ConsistentRead=True).get("Item")
        if raw is None:
            raise NotFoundError(f"schedule {schedule_id} does not exist; see 'subminute aws status' for the ids")
        return _item(raw)

    def put(self, row: Mapping[str, Any]) -> None:
        clean = normalize_row(row)
        check_unique_name(clean, self.rows())  # a scan before the write (see the module's doc)
        self._call("put_item", Item={k: to_attr(v) for k, v in clean.items()})
        self._changed()

    def update(self, schedule_id: int, changes: Mapping[str, Any]) -> None:
        """Change the named attributes only (``None`` removes one); the row must exist and stay valid."""
        current = {k: v for k, v in self.get(schedule_id).items() if not str(k).startswith("_")}
        clean = apply_changes(current, changes, schedule_id)
        if "name" in changes:  # a scan before the write (see the module's doc)
            check_unique_name(clean, self.rows())
        sets, removes, names, values = [], [], {}, {}
        for i, key in enumerate(k for k in changes if k != "id"):
            names[f"#f{i}"] = key
            if changes[key] is None:
                removes.append(f"#f{i}")
            else:
                sets.append(f"#f{i} = :v{i}")
                values[f":v{i}"] = to_attr(clean.get(key, plain(changes[key])))
        if not sets and not removes:
            return
        expression = (f"SET {', '.join(sets)} " if sets else "") + (f"REMOVE {', '.join(removes)}" if removes else "")
        kwargs: dict[str, Any] = {"ExpressionAttributeNames": names}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        if self._conditional("update_item", Key=_key(schedule_id), UpdateExpression=expression.strip(),
                             ConditionExpression="attribute_exists(id)", **kwargs) is None:
            raise NotFoundError(f"schedule {schedule_id} does not exist; see 'subminute aws status' for the ids")
        self._changed()

    def delete(self, schedule_id: int) -> None:
        if self._conditional("delete_item", Key=_key(schedule_id),
                             ConditionExpression="attribute_exists(id)") is None:
            raise NotFoundError(f"schedule {schedule_id} does not exist; see 'subminute aws status' for the ids")
        self._changed()

    def check(self, row: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` if ``row`` would not parse (used by the CLI before writing)."""
        parse_row({k: v for k, v in row.items() if not str(k).startswith("_")})

    # -- lease and hand-off (the bookkeeping item) -------------------------------------------------------
    def _bookkeeping(self) -> dict[str, Any]:
        raw = self._raw_bookkeeping()
        return _item(raw) if raw else {}

    def _raw_bookkeeping(self) -> dict[str, Any]:
        """The bookkeeping item as DynamoDB gives it (typed attribute values), ``{}`` if there is none."""
        return self._call("get_item", Key=_key(BOOKKEEPING_ID), ConsistentRead=True).get("Item") or {}

    @staticmethod
    def _lease_from(item: Mapping[str, Any]) -> Lease | None:
        """The lease in the bookkeeping item; one that does not parse (edited by hand) reads as expired,
        saying why (see :func:`parse_lease`)."""
        if item.get("lease_token") is None:  # never held; or deleted by hand while held (a hand-off shows it
            # was): then read as damaged, taken over a lease period later, the token continued above the hand-off's
            return None if item.get("handoff") is None else Lease("", 0, 0.0, damaged="the lease is missing")
        return parse_lease(item.get("lease_owner", ""), item["lease_token"], item.get("lease_expires", 0))

    def acquire_lease(self, owner: str, ttl_s: float, now: float, token: int | None = None) -> Lease | None:
        # a lease item that does not parse (edited by hand) counts as expired (those tests first: a
        # comparison of a text with a number is never true)
        condition = ("NOT attribute_type(lease_expires, :number) OR NOT attribute_type(lease_token, :number) "
                     "OR NOT attribute_type(lease_owner, :text) OR attribute_not_exists(lease_token) "
                     "OR lease_expires <= :now OR lease_owner = :owner")
        values = {":now": to_attr(now), ":owner": to_attr(owner), ":exp": to_attr(round(now + ttl_s, 3)),
                  ":one": to_attr(1), ":zero": to_attr(0), ":number": to_attr("N"), ":text": to_attr("S")}
        if token is not None:
            condition += " OR lease_token = :token"
            values[":token"] = to_attr(token)
        else:
            raw = self._raw_bookkeeping()
            current = self._lease_from(_item(raw) if raw else {})
            if current is not None and current.damaged and not current.token:  # deleted, or no number
                return self._acquire_damaged(owner, ttl_s, now, raw)
        try:
            result = self._conditional(
                "update_item", Key=_key(BOOKKEEPING_ID),
                UpdateExpression="SET lease_owner = :owner, lease_expires = :exp, "
                                 "lease_token = if_not_exists(lease_token, :zero) + :one",
                ConditionExpression=condition, ExpressionAttributeValues=values, ReturnValues="ALL_NEW")
        except StoreError as exc:
            if _error_code(exc.__cause__ or exc) != "ValidationException":
                raise
            raw = self._raw_bookkeeping()  # a token that is no number cannot be added to (edited meanwhile)
            current = self._lease_from(_item(raw) if raw else {})
            if current is None or not current.damaged or current.token:
                raise
            return self._acquire_damaged(owner, ttl_s, now, raw)
        return None if result is None else self._lease_from(_item(result["Attributes"]))

    def _acquire_damaged(self, owner: str, ttl_s: float, now: float, raw: Mapping[str, Any]) -> Lease | None:
        """Take a lease whose token is missing or no token (edited by hand), from the bookkeeping item
        ``raw`` as read: the new token continues above the hand-off's, and the write holds only while the
        token is still as read (missing, no number, or the same number: -5, 1.5, 1e38)."""
        handoff = _handoff_of(_item(raw) if raw else {})
        new = min((handoff.token if handoff is not None and handoff.token else 0) + 1, MAX_TOKEN)
        seen = raw.get("lease_token")
        values = {":owner": to_attr(owner), ":exp": to_attr(round(now + ttl_s, 3)), ":token": to_attr(new)}
        if seen is None:
            condition = "attribute_not_exists(lease_token)"
        elif "N" in seen:
            condition, values[":seen"] = "lease_token = :seen", seen
        else:
            condition, values[":number"] = "NOT attribute_type(lease_token, :number)", to_attr("N")
        done = self._conditional(
            "update_item", Key=_key(BOOKKEEPING_ID),
            UpdateExpression="SET lease_owner = :owner, lease_expires = :exp, lease_token = :token",
            ConditionExpression=condition, ExpressionAttributeValues=values)
        return None if done is None else Lease(owner, new, round(now + ttl_s, 3))

    def renew_lease(self, lease: Lease, ttl_s: float, now: float, handoff: Handoff | None = None) -> Lease | None:
        values = {":exp": to_attr(round(now + ttl_s, 3)), ":token": to_attr(lease.token)}
        update = "SET lease_expires = :exp"
        if handoff is not None:  # one write for both (a hand-off of one schedule is one write unit)
            update += ", handoff = :h"
            values[":h"] = to_attr(handoff.to_json())
        values[":owner"] = to_attr(lease.owner)  # its own lease: the token and the owner (a token edited by hand may repeat)
        result = self._conditional("update_item", Key=_key(BOOKKEEPING_ID), UpdateExpression=update,
                                   ConditionExpression="lease_token = :token AND lease_owner = :owner",
                                   ExpressionAttributeValues=values)
        return None if result is None else Lease(lease.owner, lease.token, round(now + ttl_s, 3))

    def release_lease(self, lease: Lease, now: float) -> None:
        self._conditional(
            "update_item", Key=_key(BOOKKEEPING_ID), UpdateExpression="SET lease_expires = :now",
            ConditionExpression="lease_token = :token AND lease_owner = :owner",
            ExpressionAttributeValues={":now": to_attr(now), ":token": to_attr(lease.token),
                                       ":owner": to_attr(lease.owner)})

    def read_lease(self) -> Lease | None:
        return self._lease_from(self._bookkeeping())

    def save_handoff(self, handoff: Handoff) -> None:
        """The last one wins, as in every store (a successor's takeover fence guards against an old one)."""
        self._call("update_item", Key=_key(BOOKKEEPING_ID), UpdateExpression="SET handoff = :h",
                   ExpressionAttributeValues={":h": to_attr(handoff.to_json())})

    def load_handoff(self) -> Handoff | None:
        return _handoff_of(self._bookkeeping())


def _handoff_of(item: Mapping[str, Any]) -> Handoff | None:
    text = item.get("handoff")
    return Handoff.from_raw(text) if isinstance(text, str) else None


def _id_order(row: Mapping[str, Any]) -> tuple[int, int, str]:
    sid = plain(row.get("id"))
    return (0, sid, "") if isinstance(sid, int) else (1, 0, str(sid))


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
