"""Every environment variable the settings read is documented in docs/configuration.md."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_settings_variable_is_documented():
    source = (ROOT / "ddpui" / "settings.py").read_text()
    names = set(re.findall(r"""(?:environ\.get|env_bool)\(\s*["']([A-Z0-9_]+)["']""", source))
    assert {"DATABASE_URL", "DJANGO_SECRET_KEY", "DDPUI_DATA_DIR"} <= names
    documented = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in documented)
    assert missing == []
