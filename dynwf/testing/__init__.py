"""The pytest plugin and the workflow test API."""
