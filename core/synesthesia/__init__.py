"""Synesthesia: our own transformer writes the text, plugins turn it into other media.

Heavy dependencies (torch, Hydra, Pillow) are imported lazily by the modules that need them, so that
``import synesthesia`` and ``synesthesia --help`` stay fast.
"""

__version__ = "0.1.0"

from synesthesia.hookspecs import hookimpl  # noqa: E402  (pluggy only: cheap)

__all__ = ["hookimpl", "__version__"]
