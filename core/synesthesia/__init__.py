"""Synesthesia: our own transformer writes the text, plugins turn it into other media.

Heavy dependencies (torch, Hydra, Pillow) are imported lazily by the modules that need them, so that
``import synesthesia`` and ``synesthesia --help`` stay fast.
"""

__version__ = "0.1.0"

from synesthesia.hardware import use_huge_pages  # noqa: E402  (standard library only: cheap)
from synesthesia.hookspecs import hookimpl  # noqa: E402  (pluggy only: cheap)

use_huge_pages()  # before any tensor exists: torch reads the setting at its first CPU allocation

__all__ = ["hookimpl", "__version__"]
