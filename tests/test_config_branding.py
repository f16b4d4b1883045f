"""[support] accent_color and logo_file, [[agents]] photo_file: read once, checked with care."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mailbridge.cli import main
from mailbridge.clock import SystemClock
from mailbridge.config import Config, load_config
from mailbridge.daemon.reload import prepare
from mailbridge.daemon.team import build_team
from mailbridge.errors import ConfigError
from mailbridge.store.db import Store
from tests.configs import MAILBOX

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWj"
                       "R9awAAAABJRU5ErkJggg==")
JPEG_START = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


def desk(support: str = "", agent: str = "") -> str:
    return ('[support]\naddress = "support@example.com"\nname = "Example Support"\n'
            f'{support}\n[[agents]]\nname = "Dana Whitfield"\nemail = "dana@example.com"\n'
            f"{agent}\n")


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "etc" / "mailbridge.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={"STATE_DIRECTORY": str(tmp_path)})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def test_pictures_are_read_at_load_relative_to_the_file(tmp_path: Path) -> None:
    """photo_file and logo_file name files next to the config; their bytes are in the
    settings and reach the agent, JPEG or PNG told by content, not by name."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "dana.jpg").write_bytes(JPEG_START + b"\x00" * 100)
    (tmp_path / "etc" / "logo.dat").write_bytes(PNG)
    config = load(tmp_path, desk('logo_file = "logo.dat"', 'photo_file = "dana.jpg"'))
    logo, photo = config.support.logo_file, config.agents[0].photo_file
    assert logo is not None and (logo.content_type, logo.filename, logo.data) == (
        "image/png", "logo.dat", PNG)
    assert photo is not None and photo.content_type == "image/jpeg"
    assert build_team(config).members[0].agent.photo == photo
    assert config.support.accent_color == "#1a73e8"


def test_a_picture_changed_on_disk_counts_only_after_a_reload(tmp_path: Path) -> None:
    """The picture is read once, when the file is loaded: a mail never reads the disk."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "dana.png").write_bytes(PNG)
    config = load(tmp_path, desk(agent='photo_file = "dana.png"'))
    (tmp_path / "etc" / "dana.png").write_bytes(b"not a picture any more")
    photo = config.agents[0].photo_file
    assert photo is not None and photo.data == PNG


@pytest.mark.parametrize(("content", "problem"), [
    (None, "[[agents]] #1 photo_file: cannot read {file}: No such file or directory"),
    (b"", "[[agents]] #1 photo_file: {file} is empty; save the picture as JPEG or PNG"),
    (b"GIF89a" + b"\x00" * 20,
     "[[agents]] #1 photo_file: {file} is neither a JPEG nor a PNG; save the picture as JPEG "
     "or PNG"),
    (PNG + b"\x00" * 200 * 1024,
     "[[agents]] #1 photo_file: {file} is larger than 200 KiB; every mail carries it, so "
     "scale it down (a 128x128 picture is plenty)"),
])
def test_an_unusable_photo_names_the_file_and_the_problem(
        tmp_path: Path, content: bytes | None, problem: str) -> None:
    """A missing, empty, GIF or oversized photo is one problem naming the key and the file."""
    file = tmp_path / "etc" / "dana.jpg"
    file.parent.mkdir()
    if content is not None:
        file.write_bytes(content)
    assert problems(tmp_path, desk(agent='photo_file = "dana.jpg"')) == [
        problem.format(file=file)]


def test_a_picture_of_exactly_200_kib_is_taken(tmp_path: Path) -> None:
    """The limit is 200 KiB inclusive."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "logo.png").write_bytes(PNG + b"\x00" * (200 * 1024 - len(PNG)))
    logo = load(tmp_path, desk('logo_file = "logo.png"')).support.logo_file
    assert logo is not None and len(logo.data) == 200 * 1024


def test_bad_branding_keys_are_each_a_problem(tmp_path: Path) -> None:
    """A missing logo, a colour that is not hex, a photo given twice: all reported at once."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "dana.png").write_bytes(PNG)
    found = problems(tmp_path, desk('logo_file = "brand/logo.png"\naccent_color = "blue"',
                                    'photo_file = "dana.png"\n'
                                    'photo_url = "https://example.com/dana.png"'))
    logo = tmp_path / "etc" / "brand" / "logo.png"
    assert found == [
        f"[support] logo_file: cannot read {logo}: No such file or directory",
        '[support] accent_color: expected a CSS hex colour like "#1a73e8" or "#333", '
        'got "blue"',
        "[[agents]] #1 photo_file, photo_url: set one of them, not both (photo_file travels "
        "with the mail; photo_url is fetched from the web when the mail is read)",
    ]


@pytest.mark.parametrize("value", ["#1A73E8", "#333", "#abcdef"])
def test_hex_colours_are_taken_in_lower_case(tmp_path: Path, value: str) -> None:
    config = load(tmp_path, desk(f'accent_color = "{value}"'))
    assert config.support.accent_color == value.lower()


@pytest.mark.parametrize("value", ["1a73e8", "#1a73e", "#ggg", "red", "#1a73e8;x", ""])
def test_other_colours_are_refused(tmp_path: Path, value: str) -> None:
    """Only #rgb or #rrggbb: anything else could break out of the style attribute."""
    [problem] = problems(tmp_path, desk(f'accent_color = "{value}"'))
    assert problem.startswith("[support] accent_color: expected a CSS hex colour")


def test_check_config_names_the_key_and_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check-config` exits 78 naming each unusable picture's key, its file and why."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "logo.gif").write_bytes(b"GIF89a" + b"\x00" * 20)
    path = tmp_path / "etc" / "mailbridge.toml"
    path.write_text(desk('logo_file = "logo.gif"', 'photo_file = "people/dana.jpg"') + MAILBOX,
                    encoding="utf-8")
    assert main(["check-config", str(path)]) == 78
    err = capsys.readouterr().err
    assert f"[support] logo_file: {tmp_path / 'etc' / 'logo.gif'} is neither a JPEG nor a PNG" \
        in err
    assert (f"[[agents]] #1 photo_file: cannot read {tmp_path / 'etc' / 'people' / 'dana.jpg'}"
            ": No such file or directory") in err
    assert "Traceback" not in err


def test_a_reload_reads_the_pictures_again(tmp_path: Path) -> None:
    """A new logo, photo and colour take effect on reload (`systemctl reload`), with no
    restart named: the new ingestor's renderer has the new logo and colour."""
    (tmp_path / "etc").mkdir()
    logo, photo = tmp_path / "etc" / "logo.png", tmp_path / "etc" / "dana.png"
    logo.write_bytes(PNG)
    photo.write_bytes(PNG)
    text = desk('logo_file = "logo.png"', 'photo_file = "dana.png"') + MAILBOX + (
        '[rules]\ntrusted_authserv_id = "mx.example.com"\n'
        f'[daemon]\nstate_dir = "{tmp_path}"\n')
    current = load(tmp_path, text)
    new_logo = JPEG_START + b"\x01" * 64
    logo.write_bytes(new_logo)
    photo.write_bytes(JPEG_START + b"\x02" * 64)
    (tmp_path / "etc" / "mailbridge.toml").write_text(
        text.replace('logo_file = "logo.png"', 'logo_file = "logo.png"\naccent_color = "#333"'),
        encoding="utf-8")
    store = Store.open("sqlite://")
    try:
        reloaded = prepare(current, store, SystemClock())
    finally:
        store.close()
    assert reloaded.restart_keys == ()
    branding = reloaded.ingestor.renderer.branding
    assert branding.logo is not None and branding.logo.data == new_logo
    assert branding.accent_color == "#333"
    [dana] = reloaded.config.agents
    assert dana.photo_file is not None and dana.photo_file.content_type == "image/jpeg"
