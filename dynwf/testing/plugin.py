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

from dynwf import sandbox
from dynwf.errors import DynwfError
from dynwf.testing._project import ProjectHarness, find_project
from dynwf.workers import install

_NOTICE = pytest.StashKey[str | None]()


def pytest_configure(config: pytest.Config) -> None:
    install()
    mode = config.getini("dynwf_sandbox") or None
    try:
        # As `dynwf dev`: isolates in the sandbox unless told otherwise ($DYNWF_SANDBOX,
        # the ini's dynwf_sandbox); the processes tests start inherit the policy.
        policy = sandbox.configure(mode)
        notice = sandbox.startup_notice(policy)
    except DynwfError as exc:
        raise pytest.UsageError(f"dynwf: {exc}") from None
    config.stash[_NOTICE] = notice


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Said once at the start of the session: which sandbox protections are off."""
    notice = config.stash.get(_NOTICE, None)
    return [f"dynwf {line}" for line in notice.splitlines()] if notice else []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "dynwf_sandbox",
        "the isolate sandbox in tests: require, auto or off (default: $DYNWF_SANDBOX or auto)",
        default="",
    )
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
