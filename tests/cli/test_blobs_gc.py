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


def test_gc_also_finishes_what_dead_releases_and_writes_left_in_either_layout(
    client: Client, cli_server: Server
) -> None:
    # given a blob a dead release retired (current layout) and old temporary files of dead
    # writes in both layouts (the previous one kept them in the key's folder), and a blob a
    # release of the previous layout retired just now (it may still be deciding)
    blobs = cli_server.data_dir / "blobs"
    key = hashlib.sha256(b"blobs gc: legacy").hexdigest()
    current = blobs / ".retired" / f"1000.aabbccdd-{hashlib.sha256(b'blobs gc: current').hexdigest()}"
    temporaries = [blobs / key[:2] / ".tmp-legacy", blobs / ".tmp" / ".tmp-current"]
    just_retired = blobs / key[:2] / f".retired-00112233aabbccdd-{key[2:]}"
    for path in (current, *temporaries, just_retired):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left behind")
    two_hours_ago = time.time() - 7200
    for path in temporaries:
        os.utime(path, (two_hours_ago, two_hours_ago))
    where = ["--data-dir", str(cli_server.data_dir)]

    # a dry run touches none of them
    client.ok("blobs", "gc", "--dry-run", *where)
    assert all(p.exists() for p in (current, *temporaries, just_retired))

    line = client.ok("blobs", "gc", *where)

    # nothing names the retired blob: deleted, with both temporary files; the fresh one stays
    assert "left by dead releases and writes: 0 blobs restored, 1 deleted, 2 temporary files deleted" in line
    assert not any(p.exists() for p in (current, *temporaries))
    assert just_retired.exists()
    just_retired.unlink()
    assert "left by" not in client.ok("blobs", "gc", *where)


def test_gc_refuses_a_negative_age_and_a_folder_without_a_database(client: Client) -> None:
    negative = client.run("blobs", "gc", "--older-than-hours", "-1")
    assert negative.returncode == 2 and "older-than-hours" in negative.stderr

    nowhere = client.run("blobs", "gc")
    assert nowhere.returncode == 2
    assert "--data-dir" in nowhere.stderr and "MONGODB_URL" in nowhere.stderr
    assert files_under(client.cwd) == [], "no stray .labelstream folder or database"
