"""Fetching an image URL safely: http(s) only, bounded in size, time and redirects, and by
default never to loopback, private or link-local addresses (no server-side request forgery).

``LABELSTREAM_FETCH_ALLOW_PRIVATE_NETWORKS=true`` lifts the address check (tests, intranets).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from app.core.errors import DomainError
from app.inputs.images import inspect_image
from app.settings import Settings

MAX_REDIRECTS = 3


class FetchFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class FetchedInfo:
    width: int
    height: int
    content_type: str
    size_bytes: int


async def _check_host(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchFailed("FETCH_FAILED", f"not an http(s) URL: {url[:200]}")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM,
        )
    except OSError as exc:
        raise FetchFailed("FETCH_FAILED", f"cannot resolve {parts.hostname}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise FetchFailed("FETCH_FORBIDDEN", f"{parts.hostname} resolves to a non-public address")


async def fetch_image(url: str, settings: Settings) -> tuple[bytes, FetchedInfo]:
    max_bytes = settings.max_upload_bytes
    timeout = httpx.Timeout(settings.fetch_timeout_s, connect=min(5.0, settings.fetch_timeout_s))
    try:
        async with asyncio.timeout(settings.fetch_timeout_s * 2):
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
                current = url
                for _ in range(MAX_REDIRECTS + 1):
                    await _check_host(current, settings.fetch_allow_private_networks)
                    async with client.stream("GET", current) as response:
                        if response.is_redirect and "location" in response.headers:
                            current = urljoin(current, response.headers["location"])
                            continue
                        if response.status_code != 200:
                            raise FetchFailed(
                                "FETCH_FAILED", f"the server answered HTTP {response.status_code}"
                            )
                        data = bytearray()
                        async for chunk in response.aiter_bytes():
                            data.extend(chunk)
                            if len(data) > max_bytes:
                                raise FetchFailed("TOO_LARGE", f"the image is larger than {max_bytes} bytes")
                        break
                else:
                    raise FetchFailed("FETCH_FAILED", "too many redirects")
    except TimeoutError as exc:
        raise FetchFailed("FETCH_TIMEOUT", "fetching the URL took too long") from exc
    except httpx.HTTPError as exc:
        raise FetchFailed("FETCH_FAILED", f"cannot fetch the URL: {type(exc).__name__}") from exc
    payload = bytes(data)
    try:
        info = await inspect_image(
            payload,
            "url",
            max_bytes=max_bytes,
            max_pixels=settings.max_image_pixels,
            max_side=settings.max_image_side,
            max_pixels_per_byte=settings.max_image_pixels_per_byte,
        )
    except DomainError as exc:
        raise FetchFailed(
            "TOO_LARGE" if exc.code.value == "TOO_LARGE" else "IMAGE_UNDECODABLE", exc.message
        ) from exc
    return payload, FetchedInfo(info.width, info.height, info.content_type, info.size_bytes)
