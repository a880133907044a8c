"""Settings: environment variables over the settings file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontend_api.core.config import load_settings


def test_settings_come_from_the_file_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "flexgrid.env"
    env_file.write_text("FLEXGRID_RPC_URL=http://127.0.0.1:9999\nFLEXGRID_BATCH_SIZE=50\n")
    monkeypatch.setenv("FLEXGRID_SETTINGS_FILE", str(env_file))
    monkeypatch.delenv("FLEXGRID_RPC_URL", raising=False)
    monkeypatch.setenv("FLEXGRID_BATCH_SIZE", "75")
    settings = load_settings()
    assert settings.rpc_url == "http://127.0.0.1:9999"
    assert settings.batch_size == 75
    assert load_settings(batch_size=10).batch_size == 10
