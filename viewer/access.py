"""Who may use the viewer: checks on every HTTP request and websocket upgrade, and picking the port.

The security model (also in docs/viewer.md, "Security"):

- **Host**: a request is served only when its ``Host`` header names this server: a loopback name
  (``localhost``, ``127.0.0.1``, ``[::1]``) or the ``--host`` given, with the port being served (a web
  page that rebinds its own DNS name to 127.0.0.1 sends its own name: rejected). With a wildcard
  ``--host`` (``0.0.0.0``, ``::``) IP literals and this machine's host name are accepted as well.
- **Origin**: when present, ``Origin`` must be the page's own origin (``http://`` + the Host header);
  a websocket upgrade must carry it (browsers always do). A page of another origin can neither read
  the viewer's page nor open its websocket.
- **Token**: an unguessable token (:func:`new_token`) must come with the page's URL (``?token=...``,
  printed at start, as Jupyter does); the first valid load sets it as an ``HttpOnly``,
  ``SameSite=Strict`` cookie so that the page's scripts and websocket carry it. ``--no-token``
  turns this off (Host and Origin are checked regardless).

Anything else gets ``403 Forbidden`` with a one-line reason and nothing of the scene. This module is
pure Python (no viser); :mod:`l2t_gs.viewer.viser_adapter` plugs :meth:`AccessPolicy.check` into
viser's request handling.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

from l2t_gs.errors import L2TError

#: ``Host`` names that always mean this machine.
LOOPBACK_NAMES: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1"})
#: ``--host`` values that listen on every interface.
WILDCARD_HOSTS: frozenset[str] = frozenset({"", "0.0.0.0", "::"})
#: How many ports after a taken ``--port`` are tried before giving up.
PORT_SEARCH = 20
#: Bytes of randomness in a token (``secrets.token_urlsafe``: about 43 URL-safe characters).
TOKEN_BYTES = 32
#: The URL query parameter that carries the token.
TOKEN_PARAM = "token"


def new_token() -> str:
    """A fresh unguessable token for the viewer's URL."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` header -> (lower-case name without IPv6 brackets, port or None); None when malformed."""
    value = value.strip().lower()
    if not value or any(c.isspace() or c in "/?#@\\" for c in value):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, sep, port_text = value.partition(":")
        if not sep:
            port_text = None
        elif ":" in port_text:  # an unbracketed IPv6 literal is no valid Host
            return None
    if port_text is None:
        return name, None
    if not port_text.isdigit() or len(port_text) > 5:
        return None
    return name, int(port_text)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass
class AccessPolicy:
    """The checks for one server: its ``--host``, the port it serves and its token (None: ``--no-token``)."""

    host: str = "127.0.0.1"
    token: str | None = field(default_factory=new_token)
    port: int = 0  # set once the server is bound

    def __post_init__(self) -> None:
        bind = self.host.strip().lower().strip("[]")
        names = set(LOOPBACK_NAMES)
        self.wildcard = bind in WILDCARD_HOSTS
        if not self.wildcard:
            names.add(bind)
        else:  # every interface: this machine's name too (no DNS look-up; IP literals: see `host_allowed`)
            names.add(socket.gethostname().lower())
        self.names = frozenset(names)

    @property
    def cookie_name(self) -> str:
        """The token cookie's name (cookies ignore ports: one name per port keeps two viewers apart)."""
        return f"l2t_gs_token_{self.port}"

    def url(self, host: str) -> str:
        """The URL to open (with the token), for a server at ``host`` (already bracketed when IPv6)."""
        base = f"http://{host}:{self.port}/"
        return base if self.token is None else f"{base}?{TOKEN_PARAM}={self.token}"

    def host_allowed(self, host_header: str, served_port: int | None = None) -> bool:
        """Is ``host_header`` this server: an accepted name and the served port (``served_port``, else :attr:`port`)?"""
        parsed = _split_host(host_header)
        if parsed is None:
            return False
        name, port = parsed
        if port is None:
            port = 80  # browsers leave out the scheme's default port
        if port != (self.port if served_port is None else served_port):
            return False
        return name in self.names or (self.wildcard and _is_ip(name))

    def token_from(self, path: str, cookie_header: str | None) -> tuple[str | None, bool]:
        """The token a request carries and whether it came in the URL (else from the cookie)."""
        query = urlsplit(path).query
        values = parse_qs(query, keep_blank_values=True).get(TOKEN_PARAM, [])
        if len(values) == 1:
            return values[0], True
        if cookie_header:
            try:
                jar = SimpleCookie()
                jar.load(cookie_header)
            except CookieError:
                return None, False
            morsel = jar.get(self.cookie_name)
            if morsel is not None:
                return morsel.value, False
        return None, False

    def check(
        self, path: str, header: Callable[[str], Sequence[str]], *, websocket: bool, port: int | None = None
    ) -> tuple[str | None, bool]:
        """Check one request: ``path`` (with query), ``header(name)`` -> all values of a header.

        ``port``: the port served (default :attr:`port`). Returns ``(reason, set_cookie)``: ``reason``
        is None when the request may proceed, else a one-line reason for a 403; ``set_cookie`` says the
        token came in the URL of a page load (answer with the cookie).
        """
        hosts = header("Host")
        if len(hosts) != 1 or not self.host_allowed(hosts[0], port):
            shown = hosts[0][:80] if len(hosts) == 1 else f"{len(hosts)} Host headers"
            return f"Host '{shown}' is not this viewer (open the URL that `l2t-gs view` printed)", False
        origins = header("Origin")
        if len(origins) > 1:
            return "more than one Origin header", False
        if origins:
            origin = urlsplit(origins[0].strip())
            if origin.scheme != "http" or origin.netloc.lower() != hosts[0].strip().lower():
                return f"cross-origin request from '{origins[0][:80]}'", False
        elif websocket:
            return "a websocket without an Origin header", False
        if self.token is None:
            return None, False
        cookies = header("Cookie")
        token, in_url = self.token_from(path, "; ".join(cookies) if cookies else None)
        if token is None or not hmac.compare_digest(token.encode(), self.token.encode()):
            return "missing or wrong token (open the URL with ?token=... that `l2t-gs view` printed)", False
        return None, in_url and not websocket

    def set_cookie_value(self) -> str:
        """The ``Set-Cookie`` header value that stores the token for later requests of this page."""
        assert self.token is not None
        return f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"


# --------------------------------------------------------------------------- the port
def _bind_all(host: str, port: int) -> None:
    """Bind (and close) a listening socket on every address of ``host`` as asyncio's create_server does."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen = set()
    for family, kind, proto, _name, addr in infos:
        if (family, addr) in seen:
            continue
        seen.add((family, addr))
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)


def choose_port(host: str, port: int, search: int = PORT_SEARCH) -> int:
    """The first port from ``port`` on (at most ``search`` ports) that ``host`` can listen on.

    Raises :class:`L2TError` in one line when ``host`` is no address of this machine or no port is free.
    """
    last = min(port + search - 1, 65535)
    for candidate in range(port, last + 1):
        try:
            _bind_all(host, candidate)
        except socket.gaierror as exc:
            raise L2TError(f"cannot listen on --host {host}: unknown host ({exc.strerror})") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            if exc.errno == errno.EACCES:
                raise L2TError(
                    f"cannot listen on port {candidate}: permission denied (use a port above 1023)"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise L2TError(f"cannot listen on --host {host}: not an address of this machine") from None
            raise L2TError(f"cannot listen on {host} port {candidate}: {exc.strerror or exc}") from None
        return candidate
    where = host or "all interfaces"
    if last == port:
        raise L2TError(f"no free port on {where}: port {port} is taken (choose another with --port)")
    raise L2TError(f"no free port on {where} in {port}..{last} (choose another with --port)")
