"""Where endpoints come from: the article's three stages, static lists, and their composition.

Build one from a target string with :func:`mcresolve.sources.factory.from_target`.
"""

from mcresolve.sources.base import PublishingSource, Resolution, Source
from mcresolve.sources.static import StaticSource

__all__ = ["PublishingSource", "Resolution", "Source", "StaticSource"]
