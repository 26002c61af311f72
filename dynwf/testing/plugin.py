"""pytest plugin (entry point ``dynwf``): lets test modules ``import workers``."""

from __future__ import annotations

import pytest

from dynwf.workers import install


def pytest_configure(config: pytest.Config) -> None:
    install()
