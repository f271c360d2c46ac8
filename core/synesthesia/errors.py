"""User-facing errors: one clear line that says what went wrong and what to do."""

from __future__ import annotations


class SynesthesiaError(Exception):
    """An error the user can fix. The CLI prints ``str(error)`` as one line, without a traceback."""


class ConfigError(SynesthesiaError):
    """A bad option, override or schema value; raised before any work starts."""


class CheckpointError(SynesthesiaError):
    """A checkpoint that is missing, corrupt or does not match its tokenizer. The message names the file."""


class CorpusError(SynesthesiaError):
    """A corpus that is missing, empty or unreadable. The message names the file or folder."""


class PluginError(SynesthesiaError):
    """A plugin that failed to load or misbehaved. The message names the plugin."""
