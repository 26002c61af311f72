"""The platform Worker: routes every request and every workflow step to a tenant's code.

Two ways in, one tenant lookup:

  HTTP   GET/POST /<tenant id>/...   ->  that tenant's Default.fetch (its own routes)
  steps  each pass of an instance    ->  that tenant's TenantWorkflow.run

A tenant is a folder tenants/<tenant id>/ whose worker.py defines both classes.
Tenants never see each other: each one's code runs in its own isolate (in dynwf,
its own OS process), and its WORKFLOWS binding only reaches the instances it made.
"""

import re
from pathlib import Path

from workers import Response, WorkerEntrypoint

from dynwf.dispatch import create_dynamic_workflow_entrypoint, wrap_workflow_binding

# Where tenant code comes from. A deployed platform would read it from storage
# (R2, KV, a database) instead; the dispatcher is the only place that changes.
TENANTS = Path(__file__).resolve().parent.parent / "tenants"

# Tenant ids are path segments and cache keys: lowercase letters, digits and
# hyphens, 1-63 characters. `dynwf init --tenant NAME` applies the same rule.
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

# The date tenant code is compiled against (the step.do(...) form depends on it).
TENANT_COMPATIBILITY_DATE = "2026-04-01"


class UnknownTenant(LookupError):
    pass


def get_code(tenant_id, env):
    """The tenant's code and bindings, as the Worker Loader expects them."""
    folder = TENANTS / tenant_id
    return {
        "compatibilityDate": TENANT_COMPATIBILITY_DATE,
        "mainModule": "worker.py",
        # Every .py file of the tenant is a module it can import (e.g. `import helpers`).
        "modules": {p.name: p.read_text() for p in sorted(folder.glob("*.py"))},
        # The tenant's env. Its WORKFLOWS is the platform's binding wrapped with the
        # tenant id: instances it creates carry {"tenantId": ...}, which is how
        # DynamicWorkflow below finds the tenant again on every step.
        "env": {
            "TENANT_ID": tenant_id,
            "WORKFLOWS": wrap_workflow_binding({"tenantId": tenant_id}, env=env),
        },
    }


def load_tenant(tenant_id, env):
    """The tenant's worker stub; loaded once, then cached by id by the Worker Loader."""
    if not isinstance(tenant_id, str) or not TENANT_ID.match(tenant_id):
        raise UnknownTenant(f"not a tenant id: {tenant_id!r}")
    if not (TENANTS / tenant_id / "worker.py").is_file():
        raise UnknownTenant(f"no tenant {tenant_id!r}")
    # get_code runs only when the id is not cached (first use, after an eviction,
    # or when `dynwf dev` sees the tenant's files change).
    return env.LOADER.get(tenant_id, lambda: get_code(tenant_id, env))


def load_runner(ctx):
    """Called on every pass of every instance: which tenant code runs this step?

    ctx["metadata"] is what get_code() wrapped into the tenant's binding.
    """
    return load_tenant(ctx["metadata"]["tenantId"], ctx["env"]).get_entrypoint("TenantWorkflow")


# The class wrangler.toml names as the workflow's class_name.
DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner)


class Default(WorkerEntrypoint):
    """HTTP: /<tenant id>/... goes to the tenant's own fetch handler, unchanged."""

    async def fetch(self, request):
        path = request.url.split("://", 1)[-1].partition("/")[2].split("?", 1)[0]
        tenant_id = path.split("/", 1)[0]
        if not tenant_id:
            tenants = sorted(p.parent.name for p in TENANTS.glob("*/worker.py") if TENANT_ID.match(p.parent.name))
            return Response.json({"tenants": tenants, "try": [f"/{t}/" for t in tenants]})
        try:
            tenant = load_tenant(tenant_id, self.env)
        except UnknownTenant as exc:
            return Response.json({"error": str(exc)}, status=404)
        return await tenant.get_entrypoint().fetch(request)
