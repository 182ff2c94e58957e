"""Which links of a message would lead a reader nowhere: loopback and private hosts.

An issue composed on a laptop, or sent before SLICE_BASE_URL was set, must not mail
readers links to http://127.0.0.1:8000/ or to a 10.x intranet host. The send checks
every link of what it would send, not only the settings.
"""

from __future__ import annotations

import html
import ipaddress
import re
from urllib.parse import urlsplit

_HREF = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
_TEXT_URL = re.compile(r"https?://[^\s<>\"')\]]+", re.I)
# names that never reach a public host (RFC 6761, RFC 6762, RFC 8375 and common practice)
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain")


def links_in(html_body: str, text: str) -> list[str]:
    """Every absolute http(s) link of the HTML part (href/src) and the text part, once each."""
    found = [html.unescape(m.group(1)).strip() for m in _HREF.finditer(html_body)]
    found += [m.group(0).rstrip(".,;:") for m in _TEXT_URL.finditer(text)]
    return [u for u in dict.fromkeys(found) if u.lower().startswith(("http://", "https://"))]


def is_local_host(host: str) -> bool:
    """A loopback, private, link-local or unnamed host (an IP literal or a local name)."""
    host = host.strip("[]").lower().rstrip(".")
    if not host:
        return True
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return True  # a bare name ("intranet") or a local suffix
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


def local_links(links: list[str]) -> list[str]:
    """The links that point at a loopback or private host."""
    return [u for u in links if is_local_host(urlsplit(u).hostname or "")]
