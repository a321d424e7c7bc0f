"""DynamoStore on moto (in-process): the sample's rows, partial updates, lease by conditional writes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from subminute.aws.dynamodb import BOOKKEEPING_ID, DynamoStore, from_attr, to_attr
from subminute.control.base import Lease
from subminute.control.handoff import Handoff, Position
from subminute.control.rows import parse_row, schedule_from_row
from subminute.errors import ConfigError, NotFoundError, StoreError
from subminute.timing.slots import Every

TABLE = "subminute-control"


def test_a_row_of_the_sample_as_dynamodb_returns_it_parses() -> None:
    """The sample's row through boto3's resource layer: numbers are Decimal, running is a bool."""
    schedule = parse_row({"id": Decimal(1), "running": True, "waitseconds": Decimal(5)})
    assert (schedule.id, schedule.running, schedule.timetable) == (1, True, Every(5000))
    assert parse_row({"id": Decimal(2), "running": False, "waitseconds": Decimal("0.5")}).waitseconds == 0.5


def test_attribute_values_round_trip() -> None:
    value = {"a": True, "b": 2, "c": 0.25, "d": "x", "e": None, "f": [1, "y"], "g": Decimal("1.50")}
    attrs = to_attr(value)
    assert attrs["M"]["b"] == {"N": "2"} and attrs["M"]["c"] == {"N": "0.25"} and attrs["M"]["a"] == {"BOOL": True}
    assert attrs["M"]["g"] == {"N": "1.50"} and to_attr(2.0) == {"N": "2"}
    back = from_attr(attrs)
    assert back["b"] == Decimal(2) and back["c"] == Decimal("0.25") and back["f"] == [Decimal(1), "y"]


def test_the_samples_table_drives_a_schedule_unchanged(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item={"id": {"N": "1"}, "running": {"BOOL": True}, "waitseconds": {"N": "5"}})
    store = DynamoStore(ddb, TABLE)
    (schedule,) = store.load().schedules
    assert schedule.error is None and schedule.running and schedule.timetable == Every(5000)
    assert store.rows() == [{"id": Decimal(1), "running": True, "waitseconds": Decimal(5)}]


def test_update_changes_only_the_named_attributes(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item={"id": {"N": "1"}, "running": {"BOOL": True}, "waitseconds": {"N": "5"},
                                        "_note": {"S": "kept"}})
    store = DynamoStore(ddb, TABLE)
    store.update(1, {"waitseconds": "0.5"})
    item = ddb.get_item(TableName=TABLE, Key={"id": {"N": "1"}})["Item"]
    assert item["waitseconds"] == {"N": "0.5"} and item["running"] == {"BOOL": True}
    assert item["_note"] == {"S": "kept"} and "name" not in item  # nothing the user did not ask for
    store.update(1, {"plan": "tz=UTC; 06:00-20:00 every 2s; otherwise every 30s"})
    item = ddb.get_item(TableName=TABLE, Key={"id": {"N": "1"}})["Item"]
    assert json.loads(item["plan"]["S"]) and item["waitseconds"] == {"N": "0.5"}
    store.update(1, {"plan": None})
    assert "plan" not in ddb.get_item(TableName=TABLE, Key={"id": {"N": "1"}})["Item"]


def test_a_bad_change_is_refused_and_changes_nothing(ddb: Any) -> None:
    store = DynamoStore(ddb, TABLE)
    store.put({"id": 1, "running": True, "waitseconds": 5})
    with pytest.raises(ConfigError, match="waitseconds"):
        store.update(1, {"waitseconds": -1})
    with pytest.raises(ConfigError, match="id"):
        store.update(1, {"id": 2})
    assert store.get(1)["waitseconds"] == Decimal(5)
    with pytest.raises(NotFoundError):
        store.update(7, {"running": False})
    with pytest.raises(NotFoundError):
        store.delete(7)


def test_rows_skip_the_bookkeeping_item_and_keep_bad_rows_visible(ddb: Any) -> None:
    store = DynamoStore(ddb, TABLE)
    store.put({"id": 3, "waitseconds": 2})
    store.put({"id": 1})
    ddb.put_item(TableName=TABLE, Item={"id": {"N": "2"}, "waitseconds": {"S": "soon"}})
    store.save_handoff(Handoff())
    assert [int(r["id"]) for r in store.rows()] == [1, 2, 3]
    schedules = store.load().by_id()
    assert schedules[2].error and "waitseconds" in schedules[2].error and not schedules[2].running
    assert schedules[1].running and schedules[3].timetable == Every(2000)
    assert ddb.get_item(TableName=TABLE, Key={"id": {"N": str(BOOKKEEPING_ID)}})["Item"]["handoff"]


def test_lease_by_conditional_writes(ddb: Any) -> None:
    a, b = DynamoStore(ddb, TABLE), DynamoStore(ddb, TABLE)
    lease = a.acquire_lease("a", 5, now=1000.0)
    assert lease is not None and lease.token == 1 and a.read_lease() == lease
    assert b.acquire_lease("b", 5, now=1001.0) is None  # held
    renewed = a.renew_lease(lease, 5, now=1004.0)
    assert renewed is not None and renewed.expires_at == 1009.0
    assert b.acquire_lease("b", 5, now=1008.0) is None
    taken = b.acquire_lease("b", 5, now=1010.0)  # expired: taken over, with a greater token
    assert taken is not None and taken.token == 2
    assert a.renew_lease(renewed, 5, now=1010.5) is None  # fenced off
    handed = a.acquire_lease("c", 5, now=1011.0, token=2)  # a hand-off's token lets the successor in
    assert handed is not None and handed.token == 3 and handed.owner == "c"
    a.release_lease(handed, now=1012.0)
    assert b.acquire_lease("b", 5, now=1012.5) is not None


def test_a_renewal_or_release_matches_the_holders_name_as_well_as_its_token(ddb: Any) -> None:
    store = DynamoStore(ddb, TABLE)
    lease = store.acquire_lease("a", 5, now=1000.0)
    assert lease is not None
    impostor = Lease("b", lease.token, lease.expires_at)  # its token repeated (a token edited by hand)
    assert store.renew_lease(impostor, 5, now=1001.0) is None
    store.release_lease(impostor, now=1001.0)
    assert store.read_lease() == lease


def test_a_lease_deleted_by_hand_reads_damaged_and_continues_above_the_hand_off(ddb: Any) -> None:
    # a deleted lease was taken at once with token 1 again, while its holder still renewed by token
    store = DynamoStore(ddb, TABLE)
    lease = store.acquire_lease("a", 5, now=1000.0)
    assert lease is not None
    store.renew_lease(lease, 5, now=1001.0, handoff=Handoff(token=lease.token, positions={1: Position(5, 1)}))
    ddb.update_item(TableName=TABLE, Key={"id": {"N": str(BOOKKEEPING_ID)}},
                    UpdateExpression="REMOVE lease_token, lease_owner, lease_expires")
    seen = store.read_lease()
    assert seen is not None and seen.damaged == "the lease is missing" and seen.expires_at == 0
    assert store.renew_lease(lease, 5, now=1002.0) is None  # its holder stops at its next renewal
    taken = store.acquire_lease("b", 5, now=1008.0)
    assert taken is not None and taken.owner == "b" and taken.token == lease.token + 1
    assert store.read_lease() == taken


def test_a_binary_value_in_row_1_disables_nothing_else(ddb: Any) -> None:
    # the change token put row 1 as it is through json.dumps: bytes made it fail, the keeper took that for a
    # store outage, and nothing fired (the controller returned standby)
    store = DynamoStore(ddb, TABLE)
    store.put({"id": 1, "waitseconds": 1})
    store.put({"id": 2, "waitseconds": 2})
    ddb.update_item(TableName=TABLE, Key={"id": {"N": "1"}}, UpdateExpression="SET #b = :b",
                    ExpressionAttributeNames={"#b": "_blob"}, ExpressionAttributeValues={":b": {"B": b"\x00\x01"}})
    before = store.version()
    assert before is not None
    assert [s.id for s in store.load().schedules if not s.error] == [1, 2]


def test_a_hand_off_is_kept_beside_the_lease(ddb: Any) -> None:
    store = DynamoStore(ddb, TABLE)
    lease = store.acquire_lease("a", 5, now=1000.0)
    assert lease is not None
    store.save_handoff(Handoff(token=lease.token, positions={1: Position(5, 1)}))
    assert store.load_handoff() == Handoff(token=1, positions={1: Position(5, 1)})
    assert store.read_lease() == lease  # saving the hand-off leaves the lease alone
    store.save_handoff(Handoff(token=2))  # the last one wins
    assert store.load_handoff() == Handoff(token=2)


def test_aws_errors_become_store_errors(aws: Any) -> None:
    import boto3

    store = DynamoStore(boto3.client("dynamodb", region_name="us-east-1"), "no-such-table")
    with pytest.raises(StoreError, match="no-such-table"):
        store.rows()


def test_a_schedule_from_a_row_with_only_an_id(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item={"id": {"N": "1"}})
    (schedule,) = DynamoStore(ddb, TABLE).load().schedules
    assert schedule == schedule_from_row({"id": 1})
