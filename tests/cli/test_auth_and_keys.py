"""``login``, ``logout``, ``whoami`` and ``keys`` against a running server, from a folder that
has nothing of Labelstream in it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.cli.conftest import Client, Server, files_under


def test_login_checks_the_key_saves_it_privately_and_whoami_uses_it(
    client: Client, cli_server: Server
) -> None:
    out = client.ok("login", "--url", cli_server.url + "/graphql", "--key", cli_server.key)
    assert "Logged in to " + cli_server.url in out and "My first app" in out
    saved = json.loads(client.config_file.read_text())
    assert saved == {"url": cli_server.url, "key": cli_server.key}
    assert stat.S_IMODE(client.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(client.config_file.parent.stat().st_mode) == 0o700
    assert "owner@localhost.localdomain on " + cli_server.url in client.ok("whoami")
    assert files_under(client.cwd) == [], "nothing written where the command ran"

    assert "Removed" in client.ok("logout")
    assert not client.config_file.exists()
    done = client.run("whoami")
    assert done.returncode == 2 and "labelstream login" in done.stderr


def test_environment_variables_replace_the_login(client: Client, cli_server: Server) -> None:
    client.extra = {"LABELSTREAM_URL": cli_server.url, "LABELSTREAM_API_KEY": cli_server.key}
    assert "owner@localhost.localdomain" in client.ok("whoami")
    assert not client.config_file.exists()


def test_a_wrong_key_is_refused_at_login_with_a_clear_message(client: Client, cli_server: Server) -> None:
    done = client.run("login", "--url", cli_server.url, "--key", "not-a-key")
    assert done.returncode == 4
    assert "refused the API key" in done.stderr
    assert not client.config_file.exists()


def test_an_unreachable_server_is_named(client: Client) -> None:
    from app.embedded import free_port

    url = f"http://127.0.0.1:{free_port()}"
    done = client.run("login", "--url", url, "--key", "whatever")
    assert done.returncode == 3
    assert f"cannot reach {url}" in done.stderr


def test_keys_create_list_revoke_over_the_api(logged_in: Client, cli_server: Server) -> None:
    made = logged_in.run("keys", "create", "--description", "ci robot")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().removeprefix("API key: ")
    assert cli_server.gql("{ me { user { email } } }", key=secret)["me"]["user"]["email"]
    listed = logged_in.ok("keys", "list")
    row = next(line for line in listed.splitlines() if "ci robot" in line)
    key_id = row.split()[0]
    assert "active" in row

    assert f"Revoked {key_id}" in logged_in.ok("keys", "revoke", key_id)
    assert "ci robot" not in logged_in.ok("keys", "list")
    assert "revoked" in next(
        line for line in logged_in.ok("keys", "list", "--all").splitlines() if "ci robot" in line
    )
    refused = logged_in.run("whoami", "--key", secret)
    assert refused.returncode == 4 and "refused the API key" in refused.stderr

    unknown = logged_in.run("keys", "revoke", "nope")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr


def test_keys_create_for_a_user_reaches_the_running_up_from_another_folder(
    client: Client, cli_server: Server
) -> None:
    """The bootstrap path (no key yet) writes to the database of the ``up`` on --data-dir."""
    made = client.run(
        "keys", "create", "--email", "owner@localhost.localdomain", "--data-dir", str(cli_server.data_dir)
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().removeprefix("API key: ")
    assert (
        cli_server.gql("{ me { user { email } } }", key=secret)["me"]["user"]["email"]
        == "owner@localhost.localdomain"
    )

    nobody = client.run(
        "keys", "create", "--email", "nobody@example.com", "--data-dir", str(cli_server.data_dir)
    )
    assert nobody.returncode == 1 and "no user with email 'nobody@example.com'" in nobody.stderr
    assert files_under(client.cwd) == []


def test_keys_create_without_a_running_up_says_what_to_pass_and_creates_nothing(client: Client) -> None:
    done = client.run("keys", "create", "--email", "owner@localhost.localdomain")
    assert done.returncode == 2
    assert "--data-dir" in done.stderr and "MONGODB_URL" in done.stderr
    assert files_under(client.cwd) == [], "no stray .labelstream folder or database"


def test_export_from_another_folder_with_the_data_dir_of_the_running_up(
    client: Client, cli_server: Server
) -> None:
    """No login, no key: the ``up`` running on --data-dir is found and its database read."""
    app = cli_server.gql("{ me { apps { nodes { id } } } }")["me"]["apps"]["nodes"][0]["id"]
    made = cli_server.gql(
        """mutation($a: ID!) { createDataset(input: {appId: $a, name: "empty-local"}) {
             ... on DatasetSuccess { dataset { id } } } }""",
        a=app,
    )["createDataset"]["dataset"]["id"]
    version = cli_server.gql(
        """mutation($d: ID!) { createDatasetVersion(input: {datasetId: $d}) {
             ... on DatasetVersionSuccess { datasetVersion { id } } } }""",
        d=made,
    )["createDatasetVersion"]["datasetVersion"]["id"]
    out = client.ok(
        "export", version, "-f", "jsonl", "-o", "local.zip", "--data-dir", str(cli_server.data_dir)
    )
    assert "wrote local.zip (0 inputs, 0 annotations)" in out
    assert files_under(client.cwd) == ["local.zip"]

    nothing = client.run("export", version)
    assert nothing.returncode == 2 and "labelstream login" in nothing.stderr
    assert files_under(client.cwd) == ["local.zip"], "no stray .labelstream folder"


def test_commands_against_a_stopped_server_or_with_a_wrong_key_say_so(
    client: Client, cli_server: Server, tmp_path: Path
) -> None:
    from app.embedded import free_port

    (tmp_path / "pics").mkdir()
    datasets_image(tmp_path / "pics" / "a.png")
    gone = f"http://127.0.0.1:{free_port()}"
    for args in (
        ["import", str(tmp_path / "pics")],
        ["tasks", "list"],
        ["keys", "list"],
        ["versions", "list", "-d", "x"],
    ):
        down = client.run(*args, "--url", gone, "--key", "k")
        assert down.returncode == 3 and f"cannot reach {gone}" in down.stderr, down.stderr
        refused = client.run(*args, "--url", cli_server.url, "--key", "wrong")
        assert refused.returncode == 4 and "refused the API key" in refused.stderr, refused.stderr
    assert files_under(client.cwd) == []


def datasets_image(path: Path) -> None:
    from tests.cli.datasets import image

    image(path, 10, 10, 1)


def test_login_finds_the_url_of_the_up_running_on_a_data_dir(client: Client, cli_server: Server) -> None:
    out = client.ok("login", "--data-dir", str(cli_server.data_dir), "--key", cli_server.key)
    assert f"Logged in to {cli_server.url} as owner@localhost.localdomain" in out
    assert files_under(client.cwd) == []
