"""pytest plugin (entry point ``dynwf``): ``import workers`` works, and a project fixture.

``dynwf_project`` loads the platform project the test lives in (the nearest
``wrangler.toml``/``.jsonc``/``.json`` above the test file) into a fresh engine on a
temporary journal for each test, and stops it afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dynwf.testing._project import ProjectHarness, find_project
from dynwf.workers import install


def pytest_configure(config: pytest.Config) -> None:
    install()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "dynwf_isolation",
        "isolation for tenant code in tests: process or inline",
        default="process",
    )


# pytest_asyncio.fixture, not pytest.fixture: an async fixture then works in
# pytest-asyncio's default strict mode as well as in auto mode.
@pytest_asyncio.fixture
async def dynwf_project(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ProjectHarness]:
    """The project the test file belongs to, on a fresh temporary engine."""
    root = find_project(Path(str(request.path)).parent)
    isolation = request.config.getini("dynwf_isolation")
    harness = ProjectHarness(root, tmp_path / "state", isolation=isolation)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
