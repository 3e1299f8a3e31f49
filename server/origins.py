"""Which web pages may open the WebSocket: the origin check against cross-site hijacking.

A browser names the page's origin in every WebSocket upgrade, and nothing else stops a page on
another site from driving `/ws` from a visitor's browser (the same-origin policy does not
cover WebSockets). Scripted clients send no `Origin` header and are always allowed.

- The default policy allows the page's own origin, that is an `Origin` whose host and port
  are those of the request's `Host` header (http or https: behind a TLS proxy the page is
  https while the proxy talks http to us, and forwards `Host` unchanged), and
  http(s)://localhost, 127.0.0.1 and [::1] on any port.
- `--allowed-origins` replaces it with exactly the listed origins, or `*` for any.
- An `Origin` that is not `http(s)://host[:port]` (such as `null` from a sandboxed frame or a
  `file:` page) is refused unless `*` is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

ANY = "*"
DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
Origin = tuple[str, str, int]


def parse_origins(text: str) -> frozenset[str] | None:
    """The origins of a comma-separated list, normalised; None for an empty list.

    Raises ValueError for an entry that is neither `http(s)://host[:port]` nor `*`.
    """
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        return None
    origins = set()
    for entry in entries:
        origin = ANY if entry == ANY else split_origin(entry)
        if origin is None:
            raise ValueError(
                f"allowed_origins: {entry!r} is not an origin such as https://example.com"
            )
        origins.add(origin if isinstance(origin, str) else format_origin(origin))
    return frozenset(origins)


def split_origin(text: str) -> Origin | None:
    """(scheme, host, port) of `scheme://host[:port]`, lower-case with the default port."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if (
        scheme not in DEFAULT_PORTS
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        return None
    return scheme, parts.hostname, DEFAULT_PORTS[scheme] if port is None else port


def format_origin(origin: Origin) -> str:
    """`scheme://host:port`, the port always written, so that equal origins compare equal."""
    scheme, host, port = origin
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _host_and_port(host_header: str, default_port: int) -> tuple[str, int] | None:
    """The host and port of a `Host` header, with the port of the origin's scheme by default."""
    try:
        parts = urlsplit("//" + host_header)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, default_port if port is None else port


@dataclass(frozen=True)
class OriginPolicy:
    """The origins allowed to open a WebSocket; `allowed` None is the default policy."""

    allowed: frozenset[str] | None = None

    def allows(self, origin: str | None, host_header: str | None) -> bool:
        """Whether an upgrade with this `Origin` (None: absent) and `Host` may go ahead."""
        if origin is None:
            return True
        if self.allowed is not None and ANY in self.allowed:
            return True
        parsed = split_origin(origin)
        if parsed is None:
            return False
        if self.allowed is not None:
            return format_origin(parsed) in self.allowed
        scheme, host, port = parsed
        if host in LOOPBACK_HOSTS:
            return True
        if host_header is None:
            return False
        return _host_and_port(host_header, DEFAULT_PORTS[scheme]) == (host, port)
