"""The core transformer as a text generator (built-in plugin)."""
