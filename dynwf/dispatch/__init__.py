"""Dynamic dispatch: the dispatcher API, the Worker Loader, isolates, tenant scoping, reload."""
