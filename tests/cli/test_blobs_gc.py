"""``labelstream blobs gc`` against the ``up`` running on --data-dir, from another folder."""

from __future__ import annotations

import hashlib
import os
import time

from tests.cli.conftest import Client, Server, files_under


def test_gc_deletes_an_old_blob_nothing_names_and_dry_run_only_counts_it(
    client: Client, cli_server: Server
) -> None:
    # given a blob file that nothing names, stored two hours ago (a deletion died before its release)
    data = b"blobs gc: left behind"
    key = hashlib.sha256(data).hexdigest()
    path = cli_server.data_dir / "blobs" / key[:2] / key[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    two_hours_ago = time.time() - 7200
    os.utime(path, (two_hours_ago, two_hours_ago))
    where = ["--data-dir", str(cli_server.data_dir)]

    counted = client.ok("blobs", "gc", "--dry-run", *where)
    assert counted.startswith("1 unused of ") and "(--dry-run: kept)" in counted, counted
    assert path.exists()

    # the blobs the other tests stored this session are younger than an hour: not looked at
    deleted = client.ok("blobs", "gc", *where)
    assert deleted.startswith("deleted 1 unused of "), deleted
    assert not path.exists()
    assert client.ok("blobs", "gc", *where).startswith("deleted 0 unused of ")


def test_gc_refuses_a_negative_age_and_a_folder_without_a_database(client: Client) -> None:
    negative = client.run("blobs", "gc", "--older-than-hours", "-1")
    assert negative.returncode == 2 and "older-than-hours" in negative.stderr

    nowhere = client.run("blobs", "gc")
    assert nowhere.returncode == 2
    assert "--data-dir" in nowhere.stderr and "MONGODB_URL" in nowhere.stderr
    assert files_under(client.cwd) == [], "no stray .labelstream folder or database"
