"""The ``step`` a tenant's ``run()`` gets: dynwf's step, with what Cloudflare's tenant SDK returns."""

from __future__ import annotations

from dynwf.compat._jsobject import JsObject
from dynwf.engine import Step, StepHost
from dynwf.workers._errors import error_as_on_cloudflare
from dynwf.workers._rpc import wait_result


class TenantStep(Step):
    """Step errors rebuilt as Cloudflare's SDK rebuilds them; ``wait_for_event`` gives a JS object.

    workerd's frozen SDK returns ``waitForEvent``'s promise as it is, so the event a
    tenant awaits is ``{payload, timestamp, type}`` unconverted: ``ev["payload"]``
    fails there and here; ``python_from_rpc(ev)["payload"]`` works in both.
    """

    def __init__(self, host: StepHost) -> None:
        super().__init__(host, rebuild=error_as_on_cloudflare)

    async def wait_for_event(  # type: ignore[override]
        self, name: str, event_type: str, /, timeout: str | int = "24 hours"
    ) -> JsObject:
        return wait_result(await super().wait_for_event(name, event_type, timeout=timeout))

    waitForEvent = wait_for_event  # type: ignore[assignment]
