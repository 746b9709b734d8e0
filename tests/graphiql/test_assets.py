"""The GraphiQL page and its files come from the app (no browser needed for these checks)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.factories import Api

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "app" / "graphql" / "static" / "graphiql"
# what the page needs at run time; the build tool (esbuild) is not shipped
BUNDLED = [
    "react",
    "react-dom",
    "graphiql",
    "@graphiql/plugin-explorer",
    "@graphiql/toolkit",
    "graphql",
    "graphql-ws",
]


async def test_the_page_loads_only_files_of_the_app_and_each_is_served(api: Api) -> None:
    page = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    urls = [u for u in re.findall(r'(?:src|href)="([^"]+)"', page.text) if u != "data:,"]  # no favicon
    assert urls and all(url.startswith("static/graphiql/") for url in urls), urls
    types = {".js": "text/javascript", ".css": "text/css"}
    for url in urls:
        response = await api.http.get("/" + url)  # relative to /graphql
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(types[Path(url.split("?")[0]).suffix]), url


async def test_asset_urls_change_with_the_assets(api: Api) -> None:
    page = (await api.http.get("/graphql", headers={"Accept": "text/html"})).text
    versions = set(re.findall(r"\?v=([0-9a-f]+)", page))
    assert len(versions) == 1 and len(next(iter(versions))) == 12


def test_every_bundled_package_is_pinned_and_its_licence_shipped() -> None:
    manifest = json.loads((ROOT / "tools" / "graphiql" / "package.json").read_text())
    lock = json.loads((ROOT / "tools" / "graphiql" / "package-lock.json").read_text())
    licences = (STATIC / "THIRD_PARTY_LICENSES").read_text()
    for name in BUNDLED:
        pinned = manifest["dependencies"][name]
        assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"{name} is not pinned to one version: {pinned}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == pinned
        assert f"\n{name}@{pinned} (" in licences, f"no licence for {name}@{pinned}"
    assert "Permission is hereby granted" in licences  # texts, not only names


def test_the_package_ships_the_files() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"app.graphql" = ["static/graphiql/*"]' in pyproject
    for name in ("index.html", "labelstream-graphiql.js", "vendor.js", "vendor.css", "THIRD_PARTY_LICENSES"):
        assert (STATIC / name).is_file(), name
