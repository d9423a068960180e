"""How dbdedup touches files that others may reach.

- Only regular files are read (``open_regular_file``): a FIFO or a device put where the walk saw
  a file is never opened for a read that could block forever or never end.
- What dbdedup writes about files is no more readable than they are (``ReadAccess``): the HTML
  sheet and an exported folder show their pictures and names.
- A file's device and inode are stored as PostgreSQL's signed bigint (``as_bigint``): the loader
  records them, apply and undo compare and record them again.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO, Union


def file_type(mode: int) -> str:
    """What a file that is not a regular one is, in words: "FIFO (named pipe)", "socket", "device"."""
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


class NotARegularFile(OSError):
    """A path that is no longer a regular file where one was seen (a FIFO, a device, a socket)."""


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def as_bigint(value: int | None) -> int | None:
    """An unsigned 64-bit st_dev or st_ino as dbdedup.images stores it: a signed bigint with the same bits."""
    if value is None:
        return None
    return value - (1 << 64) if value >= (1 << 63) else value


def _require_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise NotARegularFile(errno.EINVAL, f"a {file_type(mode)}, not a regular file: never read")


def open_regular_file(path: Union[bytes, str, os.PathLike]) -> BinaryIO:
    """``path`` opened for reading, only if it is a regular file, checked on the open descriptor: a FIFO
    or a device put in its place after the walk saw a file (a read could block forever, or never end,
    as /dev/zero's) is never read. NotARegularFile (an OSError) otherwise."""
    _require_regular(os.stat(path).st_mode)  # most are then never opened (opening some devices acts)
    fd = os.open(path, _OPEN_FLAGS)  # O_NONBLOCK: a FIFO swapped in since does not block the open
    try:
        _require_regular(os.fstat(fd).st_mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


GROUP_AND_OTHERS_READ = stat.S_IRGRP | stat.S_IROTH


class ReadAccess:
    """Who else may read a set of files: the group and others read bits that every file grants, each
    through folders that grant its search bit all the way down. What shows the files' pictures or
    names (the HTML sheet, an exported folder) is then made no more readable than they are."""

    def __init__(self) -> None:
        self.bits = GROUP_AND_OTHERS_READ
        self._folders: dict[bytes, int] = {}

    def _folder_bits(self, folder: bytes) -> int:
        if folder not in self._folders:
            parent = os.path.dirname(folder)
            try:
                mode = os.stat(folder).st_mode
                own = (stat.S_IRGRP if mode & stat.S_IXGRP else 0) | (stat.S_IROTH if mode & stat.S_IXOTH else 0)
            except OSError:
                own = 0
            self._folders[folder] = own & (self._folder_bits(parent) if parent != folder else GROUP_AND_OTHERS_READ)
        return self._folders[folder]

    def add(self, path: bytes) -> None:
        """Narrow ``bits`` to what ``path`` (as the page names it) and its folders grant; of a file that is
        gone (shown with no picture) only its folders count."""
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = GROUP_AND_OTHERS_READ
        # through the folders of the path shown and, for a symbolic link, those of the file it leads to
        self.bits &= (mode & self._folder_bits(os.path.dirname(os.path.abspath(path)))
                      & self._folder_bits(os.path.dirname(os.path.realpath(path))))

    def file_mode(self) -> int:
        """The mode for a file that shows them: what a new file gets under the umask, less the group and others
        read bits they do not all grant."""
        return (0o666 & ~_umask()) & (0o600 | self.bits)

    def folder_mode(self) -> int:
        """The same for a folder that lists them: its group and others search bits go with the read bits."""
        search = (stat.S_IXGRP if self.bits & stat.S_IRGRP else 0) | (stat.S_IXOTH if self.bits & stat.S_IROTH else 0)
        return (0o777 & ~_umask()) & (0o700 | self.bits | search)


def _umask() -> int:
    umask = os.umask(0o077)
    os.umask(umask)
    return umask
