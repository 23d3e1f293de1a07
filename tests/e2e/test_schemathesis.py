"""Property-based requests from /openapi.json, with a valid token: no server error anywhere."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.world import build_world, client
from tests.harness import RunningSystem


async def test_no_server_error_for_any_generated_request(
    running_system: RunningSystem, tmp_path: Path
) -> None:
    await build_world(running_system)
    async with client(running_system, "u-1") as api:
        await api.post("/v1/companies/c-2002/users/me")
    token = running_system.token("u-1")
    # Most generated requests then reach a real company the caller was added to, so the
    # commands go all the way to the consumers; other ids are tried by the access tests.
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.company_id" = "c-2002"\n')
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{running_system.base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "25",
        "--seed",
        "20261127",
        "--request-timeout",
        "30",
        "--phases",
        "examples,coverage,fuzzing",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    finished = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=900
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated and int(generated[1]) > 200 and generated[1] == generated[2], output[-3000:]
