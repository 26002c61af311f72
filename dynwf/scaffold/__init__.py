"""Scaffolding: new platform projects and tenants from the templates dynwf ships."""

from dynwf.scaffold._scaffold import (
    TENANT_ID_PATTERN,
    InvalidTenantIdError,
    NotAProjectError,
    ScaffoldError,
    ScaffoldResult,
    add_tenant,
    check_tenant_id,
    init_project,
)

__all__ = [
    "TENANT_ID_PATTERN",
    "InvalidTenantIdError",
    "NotAProjectError",
    "ScaffoldError",
    "ScaffoldResult",
    "add_tenant",
    "check_tenant_id",
    "init_project",
]
