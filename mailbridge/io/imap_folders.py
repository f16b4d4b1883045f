"""The support mailbox's folders and their roles, as the IMAP server lists them.

Public API: `list_folders(client)`, `discover_folders(settings)`, `FolderListError`.

One listing for every part that needs a folder by its role: the watchers' Sent folders
(chosen by `mailbridge.core.folders.choose_sent_folders`) and the folder our copies are
appended to (`io.sent_folder`). A plain LIST names every folder; a server with the
SPECIAL-USE capability (RFC 6154) also answers `LIST (SPECIAL-USE) "" "*"` with the
folders that have a role, and an old Gmail offers XLIST instead; their attributes are
merged in by name.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from imapclient.exceptions import IMAPClientError

from mailbridge.config import ImapSettings
from mailbridge.core.folders import Folder
from mailbridge.errors import TransientError
from mailbridge.io.imap_connect import TokenSource, log_in, open_client


class FolderListError(TransientError):
    """The server could not be asked for its folders now (connection, login, LIST)."""


def _folders(rows: Any) -> list[Folder]:
    return [Folder(str(name), frozenset(bytes(f).decode("ascii", "replace").lower()
                                        for f in flags))
            for flags, _sep, name in rows]


def _special_use(client: Any) -> list[Folder]:
    """`LIST (SPECIAL-USE) "" "*"` (RFC 6154 section 2): the folders that have a role."""
    imap = client._imap
    typ, dat = imap._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
    client._checkok("LIST", typ, dat)
    _typ, dat = imap._untagged_response(typ, dat, "LIST")
    return _folders(client._proc_folder_list(dat))


def list_folders(client: Any) -> list[Folder]:
    """Every folder of a logged-in client, with the role attributes the server offers."""
    folders = _folders(client.list_folders())
    if client.has_capability("SPECIAL-USE"):
        extra = _special_use(client)
    elif client.has_capability("XLIST"):
        extra = _folders(client.xlist_folders())
    else:
        return folders
    roles = {f.name: f.flags for f in extra}
    return [Folder(f.name, f.flags | roles.get(f.name, frozenset())) for f in folders]


def discover_folders(settings: ImapSettings, tokens: TokenSource | None = None) -> list[Folder]:
    """The mailbox's folders, on a short connection of its own. Blocking.

    Raises `FolderListError` when the server cannot be reached or refuses."""
    client: Any = None
    try:
        client = open_client(settings)
        if tokens is None:
            log_in(client, settings)
        else:
            log_in(client, settings, tokens)
        return list_folders(client)
    except (IMAPClientError, OSError, ssl.SSLError) as exc:
        raise FolderListError(f"listing the IMAP folders: {type(exc).__name__}: {exc}") from exc
    finally:
        if client is not None:
            with contextlib.suppress(IMAPClientError, OSError):
                client.logout()
