"""Choosing the Sent folders from the server's listing: by role, then by name, never Junk."""

from __future__ import annotations

from mailbridge.core.folders import AUTO, Folder, SentChoice, choose_sent_folders, marked_sent


def folder(name: str, *flags: str) -> Folder:
    return Folder(name, frozenset(f.lower() for f in ("\\HasNoChildren", *flags)))


GMAIL = [folder("INBOX"), folder("[Gmail]", "\\Noselect", "\\HasChildren"),
         folder("[Gmail]/All Mail", "\\All"), folder("[Gmail]/Sent Mail", "\\Sent"),
         folder("[Gmail]/Spam", "\\Junk"), folder("[Gmail]/Trash", "\\Trash"),
         folder("Sent")]
MICROSOFT = [folder("INBOX"), folder("Sent Items", "\\Sent"), folder("Junk Email", "\\Junk"),
             folder("Deleted Items", "\\Trash")]
UNMARKED_GERMAN = [folder("INBOX"), folder("Entwürfe"), folder("Gesendet"), folder("Papierkorb")]


def test_auto_takes_the_folders_the_server_marks_sent() -> None:
    assert choose_sent_folders(AUTO, GMAIL) == SentChoice(("[Gmail]/Sent Mail",), "special_use")
    assert choose_sent_folders(AUTO, MICROSOFT).folders == ("Sent Items",)


def test_auto_falls_back_to_a_usual_name_then_to_none() -> None:
    assert choose_sent_folders(AUTO, UNMARKED_GERMAN) == SentChoice(("Gesendet",), "name")
    assert choose_sent_folders(AUTO, [folder("INBOX"), folder("sent items")]).folders == \
        ("sent items",)
    assert choose_sent_folders(AUTO, [folder("INBOX"), folder("Archive")]) == \
        SentChoice((), "none")


def test_the_first_usual_name_wins() -> None:
    listing = [folder("INBOX"), folder("Gesendet"), folder("Sent Items"), folder("Sent")]
    assert choose_sent_folders(AUTO, listing).folders == ("Sent",)


def test_junk_trash_noselect_and_the_inbox_are_never_chosen() -> None:
    listing = [folder("INBOX", "\\Sent"), folder("Sent", "\\Sent", "\\Junk"),
               folder("Old", "\\Sent", "\\Noselect"), folder("Sent Items", "\\Trash")]
    assert choose_sent_folders(AUTO, listing) == SentChoice((), "none")
    assert marked_sent(listing) == ("INBOX", "Sent")


def test_a_configured_list_keeps_what_exists_and_names_the_rest() -> None:
    choice = choose_sent_folders(("Sent", "Agents", "[Gmail]/Spam", "Sent"), GMAIL)
    assert choice == SentChoice(("Sent",), "configured", missing=("Agents",),
                                refused=("[Gmail]/Spam",))
    assert choose_sent_folders((), GMAIL) == SentChoice((), "configured")
