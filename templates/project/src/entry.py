"""The platform Worker: routes every request and every workflow step to a tenant's code.

Two ways in, one tenant lookup:

  HTTP   GET/POST /<tenant id>/...   ->  that tenant's Default.fetch (its own routes)
  steps  each pass of an instance    ->  that tenant's TenantWorkflow.run

Tenant code lives in the KV namespace TENANT_CODE: "<tenant>/_manifest.json" lists a
tenant's modules and its code version, "<tenant>/<file>" holds each file. `dynwf dev`,
`dynwf run` and the tests serve it from tenants/<tenant>/ as the files are now; on
Cloudflare, `dynwf build` writes it for `npx wrangler kv bulk put`.
Tenants never see each other: each one's code runs in its own isolate (in dynwf, its
own OS process), and its WORKFLOWS binding only reaches the instances it made.

This file is Cloudflare's Python as it is: `pywrangler deploy` uploads it unchanged.
"""

import json
import re

from js import Object
from pyodide.ffi import create_proxy, to_js
from workers import Response, WorkerEntrypoint

# Cloudflare's Python Dynamic Workflows library. Deployed, it is vendored next to this
# file (see README.md); under dynwf, dynwf provides it.
from dynamic_workflows import (
    DynamicWorkflowBinding,
    create_dynamic_workflow_entrypoint,
    wrap_workflow_binding,
)

# What Cloudflare registers as this Worker's classes. DynamicWorkflowBinding must be
# one of them: it is how each tenant's env.WORKFLOWS reaches the real workflow.
__all__ = ["Default", "DynamicWorkflow", "DynamicWorkflowBinding"]

# Tenant ids are path segments and KV key prefixes: lowercase letters, digits and
# hyphens, 1-63 characters. `dynwf init --tenant NAME` applies the same rule.
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

# The date tenant code is compiled against (the step.do(...) form depends on it).
TENANT_COMPATIBILITY_DATE = "2026-04-01"

# Tenant code already read from KV, by loader id ("<tenant>:<version>").
_CODE = {}


class UnknownTenant(LookupError):
    pass


async def read_code(env, tenant_id):
    """The tenant's loader id and modules; the id changes whenever its code changes."""
    if not isinstance(tenant_id, str) or not TENANT_ID.match(tenant_id):
        raise UnknownTenant(f"not a tenant id: {tenant_id!r}")
    manifest = await env.TENANT_CODE.get(f"{tenant_id}/_manifest.json")
    if not manifest:
        raise UnknownTenant(f"no tenant {tenant_id!r}")
    manifest = json.loads(manifest)
    loader_id = f"{tenant_id}:{manifest['version']}"
    if loader_id not in _CODE:
        modules = {}
        for name in manifest["modules"]:
            text = await env.TENANT_CODE.get(f"{tenant_id}/{name}")
            modules[name] = {"py": text} if name.endswith(".py") else {"text": text}
        _CODE[loader_id] = {"mainModule": manifest["mainModule"], "modules": modules}
    return loader_id, _CODE[loader_id]


async def load_tenant(env, tenant_id):
    """The tenant's worker stub, loaded once per code version by the Worker Loader."""
    loader_id, code = await read_code(env, tenant_id)

    def get_code():
        # Called only when loader_id is not cached: the first use of this version.
        return to_js(
            {
                "compatibilityDate": TENANT_COMPATIBILITY_DATE,
                "compatibilityFlags": ["python_workers"],
                "mainModule": code["mainModule"],
                "modules": code["modules"],
                # The tenant's env. Its WORKFLOWS is the platform's binding wrapped with
                # the tenant id: instances it creates carry {"tenantId": ...}, which is
                # how DynamicWorkflow below finds the tenant again on every step.
                "env": {
                    "TENANT_ID": tenant_id,
                    "WORKFLOWS": wrap_workflow_binding({"tenantId": tenant_id}),
                },
            },
            dict_converter=Object.fromEntries,
        )

    return env.LOADER.get(loader_id, create_proxy(get_code))


async def load_runner(ctx):
    """Called on every pass of every instance: which tenant code runs this step?

    ctx["metadata"] is what wrap_workflow_binding() put into the tenant's binding.
    """
    tenant = await load_tenant(ctx["env"], ctx["metadata"]["tenantId"])
    return tenant.getEntrypoint("TenantWorkflow")


# The class wrangler.toml names as the workflow's class_name.
DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner)


class Default(WorkerEntrypoint):
    """HTTP: /<tenant id>/... goes to the tenant's own fetch handler, unchanged."""

    async def fetch(self, request):
        path = request.url.split("://", 1)[-1].partition("/")[2].split("?", 1)[0]
        tenant_id = path.split("/", 1)[0]
        if not tenant_id:
            listing = await self.env.TENANT_CODE.list()
            tenants = sorted(
                key.name.split("/", 1)[0]
                for key in listing.keys
                if key.name.endswith("/_manifest.json")
            )
            return Response.json({"tenants": tenants, "try": [f"/{t}/" for t in tenants]})
        try:
            tenant = await load_tenant(self.env, tenant_id)
        except UnknownTenant as exc:
            return Response.json({"error": str(exc)}, status=404)
        return await tenant.getEntrypoint().fetch(request.js_object)
