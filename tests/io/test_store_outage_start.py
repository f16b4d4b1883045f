"""A PostgreSQL store that does not answer when the daemon starts is waited out, not an exit
that systemd gives up restarting; one that answers and refuses is a config error (78)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import REPO, Daemon, write_config
from tests.mails import customer_mail
from tests.postgres import PrivateCluster
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    PrivateCluster.remove_orphans()
    cluster = PrivateCluster().init()
    yield cluster
    cluster.destroy()


def test_run_waits_for_a_store_that_does_not_answer_yet(
        tmp_path: Path, cluster: PrivateCluster, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """With PostgreSQL down, `run` keeps trying and says so; once it is up, mail is
    acknowledged."""
    cluster.stop()
    config = write_config(tmp_path / "mb", dovecot, smtp_peer, store_url=cluster.url())
    daemon = Daemon(config)
    with daemon.log_path.open("ab") as log:
        daemon.process = subprocess.Popen(
            [sys.executable, "-m", "mailbridge", "run", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_for(lambda: daemon.log().count("event=unavailable") >= 2, timeout=20,
                 message=lambda: f"no retries logged:\n{daemon.log()}")
        assert daemon.process.poll() is None, daemon.log()
        assert "Connection refused" in daemon.log()
        cluster.start()
        wait_for(daemon.healthy, timeout=60,
                 message=lambda: f"daemon not healthy after the store came up:\n{daemon.log()}")
        dovecot.append(customer_mail(1))
        smtp_peer.wait_for_count(1, timeout=15)
    finally:
        assert daemon.stop() == 0


def test_a_store_that_refuses_is_a_config_error(
        tmp_path: Path, cluster: PrivateCluster, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """No such database: one line naming [store] url, exit 78 at once, no retrying."""
    config = write_config(tmp_path / "mb", dovecot, smtp_peer,
                          store_url=cluster.url("no_such_database"))
    done = subprocess.run([sys.executable, "-m", "mailbridge", "run", "--config", str(config)],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert done.returncode == 78, done.stderr
    assert '[store] url "postgresql://postgres@' in done.stderr
    assert 'database "no_such_database" does not exist' in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "event=unavailable" not in done.stdout
