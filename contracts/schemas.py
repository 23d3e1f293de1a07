"""Writes one JSON Schema per message type (taken in and sent out) into docs/events/, or checks
they are current.

python -m contracts.schemas           # write
python -m contracts.schemas --check   # exit 1 and name the stale files
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from contracts.outbound import OUTBOUND
from contracts.registry import ALL_MESSAGES, KNOWN_VERSIONS

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "docs" / "events"


def schema_of(message_type: type[Any]) -> dict[str, Any]:
    """The JSON Schema of one message type, with the versions we read or write."""
    name = str(message_type.__struct_config__.tag)
    schema: dict[str, Any] = _clean_descriptions(msgspec.json.schema(message_type))
    envelope = schema["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    envelope["properties"]["version"] = {"enum": sorted(KNOWN_VERSIONS.get(name, {1}))}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": name, **schema}


def _clean_descriptions(value: Any) -> Any:
    """Every ``description`` (a docstring) with its indentation removed, as msgspec 0.23 writes
    it and 0.22 did not: the committed schemas then do not depend on which one is installed."""
    if isinstance(value, dict):
        return {
            k: inspect.cleandoc(v)
            if k == "description" and isinstance(v, str)
            else _clean_descriptions(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_clean_descriptions(v) for v in value]
    return value


def render() -> dict[str, str]:
    """File name → file text, for every message type, taken in and sent out."""
    files: dict[str, str] = {}
    for message_type in (*ALL_MESSAGES, *OUTBOUND):
        name = str(message_type.__struct_config__.tag)
        files[f"{name}.json"] = json.dumps(schema_of(message_type), indent=2, sort_keys=True) + "\n"
    return files


def stale(directory: Path) -> list[str]:
    expected = render()
    present = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    wrong = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]
    return sorted(wrong + sorted(present - expected.keys()))


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    expected = render()
    for path in directory.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only check; write nothing")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.check:
        wrong = stale(args.dir)
        for name in wrong:
            print(f"stale: {args.dir / name}", file=sys.stderr)
        if wrong:
            print("run: python -m contracts.schemas", file=sys.stderr)
        return 1 if wrong else 0
    write(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
