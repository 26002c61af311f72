"""workflows[].schedules: the cron parser, `dynwf validate`'s checks, and the config it loads."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dynwf.config import CronError, InvalidConfigError, load_config, parse_cron, validate_config

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = (
    'name = "p"\nmain = "src/entry.py"\ncompatibility_date = "2026-04-01"\n'
    'compatibility_flags = ["python_workers"]\n'
)
ENTRY = """\
from workers import WorkflowEntrypoint


class Nightly(WorkflowEntrypoint):
    async def run(self, event, step):
        return event.get("schedule")
"""


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _at(ms: int | None) -> str | None:
    return (
        None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
    )


def _project(tmp_path: Path, schedules: str, extra: str = "") -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "entry.py").write_text(ENTRY)
    (tmp_path / "wrangler.toml").write_text(
        HEADER
        + '[[workflows]]\nname = "nightly"\nbinding = "NIGHTLY"\nclass_name = "Nightly"\n'
        + (f"schedules = {schedules}\n" if schedules else "")
        + extra
    )
    return tmp_path


# -- the parser: next fire times, against saffron's own test cases ------------------------


@pytest.mark.parametrize(
    ("cron", "after", "fires"),
    [
        ("*/10 * * * *", "2020-01-01T00:00", "2020-01-01 00:10"),
        ("0 0 * JAN SAT-SUN", "2020-01-01T00:00", "2020-01-04 00:00"),
        ("59-0 23-0 31-1 12-1 *", "2020-01-01T00:30", "2020-01-01 00:59"),  # wraparound ranges
        ("0 20-4/2 * * *", "2020-01-01T05:00", "2020-01-01 20:00"),
        ("*/15,30-59/10 0 * * *", "2020-01-01T00:31", "2020-01-01 00:40"),
        ("0 0 L FEB *", "2023-03-01T00:00", "2024-02-29 00:00"),
        ("0 0 L-1 FEB *", "2024-01-01T00:00", "2024-02-28 00:00"),
        ("0 0 LW MAY *", "2025-01-01T00:00", "2025-05-30 00:00"),  # the 31st is a Saturday
        ("0 0 L-1W MAY *", "2021-01-01T00:00", "2021-05-31 00:00"),
        ("0 0 1W MAY *", "2021-01-01T00:00", "2021-05-03 00:00"),  # the 1st is a Saturday
        ("0 0 L-28W 2 *", "1976-01-01T00:00", "1976-02-02 00:00"),
        ("0 0 * * 7L", "2020-01-01T00:00", "2020-01-25 00:00"),  # last Saturday
        ("0 0 * * SAT#5", "2020-01-01T00:00", "2020-02-29 00:00"),
        ("0 0 * FEB SAT#5", "2021-01-01T00:00", "2048-02-29 00:00"),
        ("0 0 * * L", "2026-12-02T00:00", "2026-12-05 00:00"),  # a lone L is Saturday
        ("0 9 * * mon-fri", "2026-12-05T00:00", "2026-12-07 09:00"),  # names, any case
        ("0 9 * * 1", "2026-12-01T00:00", "2026-12-06 09:00"),  # 1 is Sunday on Cloudflare
        ("0 0 1 * 2", "2026-12-02T00:00", "2026-12-07 00:00"),  # both day fields: either
        ("* * 31 2 *", "2020-01-01T00:00", None),  # never
    ],
)
def test_cron_next_fire_time_in_utc(cron: str, after: str, fires: str | None) -> None:
    assert _at(parse_cron(cron).next_after(_ms(after))) == fires


def test_cron_next_fire_time_is_strictly_after_and_on_the_minute() -> None:
    cron = parse_cron("* * * * *")
    assert cron.next_after(_ms("2026-12-02T10:00")) == _ms("2026-12-02T10:01")
    assert cron.next_after(_ms("2026-12-02T10:00") + 59_999) == _ms("2026-12-02T10:01")


BAD_CRONS = [
    ("", "it is empty; write five fields: minute hour day-of-month month day-of-week"),
    (" 0 * * * *", "remove the spaces before or after the expression"),
    ("0 * * *", "it has 4 field(s); write five fields: minute hour day-of-month month day-of-week"),
    (
        "0 0 * * * *",
        "it has 6 field(s); write five fields: minute hour day-of-month month day-of-week "
        "(Cloudflare has no seconds or year field)",
    ),
    (
        "@daily",
        "it has 1 field(s); write five fields: minute hour day-of-month month day-of-week "
        "(@daily-style shorthands are not accepted)",
    ),
    ("60 * * * *", "the minute field '60': 60 is out of range 0-59"),
    ("0 24 * * *", "the hour field '24': 24 is out of range 0-23"),
    ("0 0 0 * *", "the day-of-month field '0': 0 is out of range 1-31"),
    ("0 0 * 13 *", "the month field '13': 13 is out of range 1-12 or JAN-DEC"),
    (
        "0 0 * * 0",
        "the day-of-week field '0': 0 is out of range 1-7 or SUN-SAT; Cloudflare counts "
        "SUN=1 ... SAT=7, so Sunday is 1 or SUN",
    ),
    ("0 0 * * 8", "the day-of-week field '8': 8 is out of range 1-7 or SUN-SAT"),
    ("*/0 * * * *", "the minute field '*/0': the step /0 must be a number 1-59"),
    ("0 */24 * * *", "the hour field '*/24': the step /24 must be a number 1-23"),
    ("0 0 * FOO *", "the month field 'FOO': 'FOO' is not 1-12 or JAN-DEC"),
    ("0 0 * * FUN", "the day-of-week field 'FUN': 'FUN' is not 1-7 or SUN-SAT"),
    ("0 0 L-31 * *", "the day-of-month field 'L-31': the offset in L-n must be 1-30"),
    ("0 0 LX * *", "the day-of-month field 'LX': write L, LW, L-n or L-nW (n 1-30), alone"),
    (
        "0 0 1,L * *",
        "the day-of-month field '1,L': W and L only appear as nW, L, LW, L-n or L-nW, each "
        "alone (no list, range or step), and # belongs to the day-of-week field",
    ),
    ("0 0 * * 1#6", "the day-of-week field '1#6': the n in d#n must be 1-5"),
    ("*,5 * * * *", "the minute field '*,5': '*' stands alone or as '*/n'"),
    ("5,,6 * * * *", "the minute field '5,,6' has an empty list item"),
    ("0 0 ? * *", "the day-of-month field '?': '?' is not a number 1-31"),
    ("MON 0 * * *", "the minute field 'MON': 'MON' is not a number 0-59"),
]


@pytest.mark.parametrize(("cron", "reason"), BAD_CRONS)
def test_cron_refuses_what_cloudflare_refuses(cron: str, reason: str) -> None:
    with pytest.raises(CronError) as err:
        parse_cron(cron)
    assert err.value.reason == reason


# -- dynwf validate ------------------------------------------------------------------------


def test_validate_accepts_one_cron_or_a_list_and_load_config_carries_them(tmp_path: Path) -> None:
    _project(tmp_path, '["0 * * * *", "*/15 * * * *", "0 9 * * MON-FRI", "0 0 L * *"]')
    report = validate_config(tmp_path)
    assert report.valid, report.diagnostics
    assert [d for d in report.diagnostics if "schedules" in d.message] == []
    assert load_config(tmp_path).workflows[0].schedules == (
        "0 * * * *",
        "*/15 * * * *",
        "0 9 * * MON-FRI",
        "0 0 L * *",
    )
    _project(tmp_path, '"0 3 * * *"')
    assert load_config(tmp_path).workflows[0].schedules == ("0 3 * * *",)


@pytest.mark.parametrize(("cron", "reason"), BAD_CRONS[1:])  # "" is wrangler's shape rule
def test_validate_names_each_bad_cron_with_its_reason(
    tmp_path: Path, cron: str, reason: str
) -> None:
    _project(tmp_path, f'["0 * * * *", "{cron}"]')
    (error,) = validate_config(tmp_path).errors
    quoted = '"' + cron + '"'
    assert error.code == "dynwf.workflows.schedule-cron"
    assert error.message == (
        f'"workflows[0].schedules" {quoted} is not a cron expression Cloudflare accepts: {reason}.'
    )
    assert (error.line, error.column, Path(error.file).name) == (9, 27, "wrangler.toml")


def test_validate_says_a_cron_that_never_fires(tmp_path: Path) -> None:
    _project(tmp_path, '"0 0 30 FEB *"')
    (error,) = validate_config(tmp_path).errors
    assert error.code == "dynwf.workflows.schedule-never-fires"
    assert '"0 0 30 FEB *" never fires' in error.message


@pytest.mark.parametrize("value", ['""', "[]", '["0 * * * *", 5]', '[""]', "3", "{ a = 1 }"])
def test_validate_refuses_a_schedules_shape_wrangler_refuses(tmp_path: Path, value: str) -> None:
    _project(tmp_path, value)
    (error,) = validate_config(tmp_path).errors
    assert error.code == "wrangler.workflows.schedules"
    assert error.message.startswith(
        '"workflows[0]" bindings should, optionally, have a "schedules" field that is a '
        "non-empty cron expression string or a non-empty array of them, but got {"
    )


def test_validate_refuses_schedules_on_another_workers_workflow(tmp_path: Path) -> None:
    _project(tmp_path, '"0 * * * *"', extra='script_name = "billing"\n')
    (error,) = validate_config(tmp_path).errors
    assert error.code == "wrangler.workflows.schedules-script-name"
    assert 'references external script "billing"' in error.message


def test_validate_checks_schedules_in_each_env(tmp_path: Path) -> None:
    _project(
        tmp_path,
        '"0 * * * *"',
        extra='\n[[env.staging.workflows]]\nname = "nightly"\nbinding = "NIGHTLY"\n'
        'class_name = "Nightly"\nschedules = "0 0 * * 0"\n',
    )
    (error,) = validate_config(tmp_path).errors
    assert error.message.startswith('"env.staging.workflows[0].schedules" "0 0 * * 0"')


def test_validate_says_a_dispatchers_workflow_has_no_envelope(tmp_path: Path) -> None:
    root = tmp_path / "platform"
    shutil.copytree(FIXTURES / "project_two_tenants", root)
    config = root / "wrangler.toml"
    config.write_text(config.read_text() + 'schedules = "0 * * * *"\n')
    (error,) = validate_config(root).errors
    assert error.code == "dynwf.workflows.schedule-no-envelope"
    assert error.message.startswith(
        '"workflows[0]" class_name "DynamicWorkflow" is the dispatcher\'s dynamic workflow '
        "(create_dynamic_workflow_entrypoint), but a scheduled instance is created with no "
        "params, so it has no __dispatcherMetadata envelope"
    )
    assert "MissingDispatcherMetadataError" in error.message
    with pytest.raises(InvalidConfigError, match="no __dispatcherMetadata envelope"):
        load_config(root)  # so `dynwf dev` refuses it too, before anything runs
