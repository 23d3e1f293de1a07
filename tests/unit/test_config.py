from __future__ import annotations

import pytest

from services.__main__ import main
from services.config import Settings, vhost_of


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.amqp_url.startswith("amqp://")
    assert settings.max_attempts == len(settings.retry_delays) + 1


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "BACKOFFICE_PREFETCH": "10",
            "BACKOFFICE_RETRY_DELAYS": "0.5, 2",
            "BACKOFFICE_TICK_SECONDS": "1.5",
            "BACKOFFICE_MONGO_DB": "x",
        }
    )
    assert (settings.prefetch, settings.retry_delays, settings.tick_seconds) == (
        10,
        (0.5, 2.0),
        1.5,
    )
    assert settings.mongo_db == "x"
    assert settings.max_attempts == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKOFFICE_PREFETCH", "many"),
        ("BACKOFFICE_RETRY_DELAYS", "1,-2"),
        ("BACKOFFICE_RETRY_DELAYS", ""),
        ("BACKOFFICE_CLOSING_URL", "https://x/{company}"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_the_closing_link_reaches_the_closing_rows() -> None:
    from services.__main__ import definition
    from tests import factories as f
    from tests.unit.tabs import replay

    settings = Settings.from_env({"BACKOFFICE_CLOSING_URL": "https://erp.example/{company_id}"})
    (rulebook,) = definition("closing", settings).rulebooks
    state = replay(rulebook, [f.details()], "2026-03-01T12:00")
    assert state.periods[0].closing_url == "https://erp.example/c-2002"


@pytest.mark.parametrize("name", ["BACKOFFICE_JWT_SECRET", "BACKOFFICE_SERVICE_SECRET"])
@pytest.mark.parametrize("command", [["api"], ["run"]])
def test_a_process_refuses_to_start_with_a_short_secret(
    name: str,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BACKOFFICE_JWT_SECRET", "j" * 32)
    monkeypatch.setenv("BACKOFFICE_SERVICE_SECRET", "s" * 32)
    monkeypatch.setenv(name, "x" * 31)
    with pytest.raises(SystemExit) as stopped:
        main(command)
    assert stopped.value.code == 2
    assert f"{name} must be set to at least 32 bytes (it has 31)" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["consumer", "bookkeeping"], ["clock"]])
def test_consumers_and_the_clock_need_the_service_secret(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BACKOFFICE_SERVICE_SECRET", raising=False)
    with pytest.raises(SystemExit):
        main(command)
    assert "BACKOFFICE_SERVICE_SECRET must be set" in capsys.readouterr().err


def test_the_virtual_host_is_read_from_the_url_as_aio_pika_reads_it() -> None:
    assert vhost_of("amqp://guest:guest@127.0.0.1:5672/") == "/"
    assert vhost_of("amqp://127.0.0.1") == "/"
    assert vhost_of("amqp://u:p@broker/%2F") == "/"
    assert vhost_of("amqps://u:p@broker:5671/agency-a?heartbeat=30") == "agency-a"
