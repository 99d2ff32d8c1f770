"""Errors of the data layer. Both say which file or folder is at fault, so a bad data root is fixed in one go."""

from __future__ import annotations


class DataLayoutError(FileNotFoundError):
    """A dataset root lacks a file or folder of its layout, or holds one that does not parse.

    The message names the path at fault and the layout expected (the catalog entry's `layout`).
    """

    def __str__(self) -> str:  # FileNotFoundError would print "[Errno None]"-style text around a bare message
        return str(self.args[0]) if self.args else ""


class ImageReadError(OSError):
    """An image file of a dataset cannot be opened or decoded. The message names the file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
