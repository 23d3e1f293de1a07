"""The JSON Schemas in docs/events/ are what the contracts say today."""

from __future__ import annotations

from pathlib import Path

import yaml

from contracts import asyncapi, schemas
from contracts.outbound import OUTBOUND
from contracts.registry import INBOUND_EVENTS, type_name


def test_committed_schemas_are_current() -> None:
    stale = schemas.stale(schemas.DEFAULT_DIR)
    assert stale == [], f"stale schemas {stale}: run python -m contracts.schemas"


def test_a_changed_schema_is_detected(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    assert schemas.stale(tmp_path) == []
    target = tmp_path / "bookkeeping.period_submitted.json"
    target.write_text(target.read_text().replace("YYYY-MM", "YYYYMM"))
    (tmp_path / "gone.event.json").write_text("{}")
    (tmp_path / "vat.report_step_changed.json").unlink()
    assert schemas.stale(tmp_path) == [
        "bookkeeping.period_submitted.json",
        "gone.event.json",
        "vat.report_step_changed.json",
    ]


def test_the_committed_asyncapi_document_is_current() -> None:
    """docs/asyncapi.yaml is what the contracts make (python -m contracts.asyncapi)."""
    assert asyncapi.main(["--check"]) == 0


def test_the_asyncapi_document_names_every_channel_message_and_schema() -> None:
    document = yaml.safe_load(asyncapi.DEFAULT_PATH.read_text())
    assert document["asyncapi"] == "3.0.0"
    addresses = {c["address"]: c for c in document["channels"].values()}
    assert set(addresses) == {"accounting.events", "backoffice.events"}
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert names == {type_name(t) for t in INBOUND_EVENTS} | {
        str(t.__struct_config__.tag) for t in OUTBOUND
    }

    def resolve(ref: str) -> object:
        node: object = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, ref
            node = node[part]
        return node

    for channel in document["channels"].values():
        for message in channel["messages"].values():
            resolve(message["$ref"])
    for operation in document["operations"].values():
        resolve(operation["channel"]["$ref"])
        for message in operation["messages"]:
            resolve(message["$ref"])
    for message in document["components"]["messages"].values():
        schema = asyncapi.DOCS / message["payload"]["schema"]["$ref"]
        assert schema.is_file(), schema
