"""The dev server: HTTP to the dispatcher and the explorer REST API."""
