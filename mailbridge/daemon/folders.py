"""The Sent folders the daemon watches, found once at start among the server's folders.

Public API: `resolve_sent_folders(config, list_folders) -> Config`.

`[imap] sent_folders` ("auto" or a list) is resolved against the server's listing
(`mailbridge.core.folders`) before the leases are taken, and the names found replace it in
the running configuration, so that the leases, the watchers, the ingestor's "from a Sent
folder" check, the copies of sent mail and a reload (which keeps [imap] as it runs) all see
the same folders. What the operator must know is logged once, here, with the names the
server has: no Sent folder found, a configured folder missing, Junk or Trash configured. A
folder that is missing is not watched, so it is not retried in a loop. When the server
cannot be asked (it is down at start), a configured list is watched as it is, and "auto"
watches none until the next start, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from mailbridge.config import Config, ImapSettings
from mailbridge.core.folders import Folder, SentChoice, choose_sent_folders
from mailbridge.errors import TransientError
from mailbridge.logs import fields

log = logging.getLogger(__name__)

MAX_NAMES_LOGGED = 40
HINT = "set [imap] sent_folders to the folders where the agents' replies are filed"


async def resolve_sent_folders(
        config: Config, list_folders: Callable[[ImapSettings], list[Folder]]) -> Config:
    """`config` with `[imap] sent_folders` replaced by the folders to watch;
    `list_folders` (blocking, run in a thread) raises `TransientError` when the server
    cannot be asked."""
    imap = config.imap
    if imap is None:
        return config
    try:
        listing = await asyncio.to_thread(list_folders, imap)
    except TransientError as exc:
        folders = () if isinstance(imap.sent_folders, str) else imap.sent_folders
        log.warning("imap %s", fields(
            event="sent_folders_unknown", error=str(exc)[:200], watching=", ".join(folders),
            hint="restart once the server answers" if not folders else None))
    else:
        choice = choose_sent_folders(imap.sent_folders, listing, inbox=imap.mailbox)
        report(choice, listing)
        folders = choice.folders
    return config.model_copy(update={"imap": imap.model_copy(
        update={"sent_folders": tuple(folders)})})


def report(choice: SentChoice, listing: Sequence[Folder]) -> None:
    """Log the choice: one info line, and one warning per thing the operator must fix."""
    names = ", ".join(f.name for f in listing[:MAX_NAMES_LOGGED])
    if len(listing) > MAX_NAMES_LOGGED:
        names += ", …"
    if choice.how == "none":
        log.warning("imap %s", fields(event="no_sent_folder", server_folders=names, hint=HINT))
    for name in choice.missing:
        log.warning("imap %s", fields(event="sent_folder_missing", folder=name,
                                      server_folders=names, hint=HINT))
    for name in choice.refused:
        log.warning("imap %s", fields(event="sent_folder_refused", folder=name,
                                      why="Junk and Trash are never watched"))
    log.info("imap %s", fields(event="sent_folders", folders=", ".join(choice.folders),
                               found_by=choice.how))
