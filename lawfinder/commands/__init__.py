"""One module per CLI command; `lawfinder.cli` imports them lazily so start-up stays fast."""
