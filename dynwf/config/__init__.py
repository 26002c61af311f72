"""Project config: read wrangler.toml / wrangler.jsonc and validate it as wrangler does."""
