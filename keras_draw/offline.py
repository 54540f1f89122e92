"""Is a download server reachable? Asked before tfds downloads, so that offline a missing data set
fails at once: tfds itself retries for about 3.5 minutes before it gives up."""

import os
import socket
import urllib.parse

PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
TIMEOUT_S = 5.0  # a TCP handshake; a dropped SYN (a firewall) waits this long, no more


def unreachable(url, timeout=TIMEOUT_S):
    """None if a TCP connection to `url`'s host and port opens, or where a proxy is set (the
    proxy, not this machine, reaches the host); else why not, in a few words."""
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except socket.gaierror as err:  # no DNS: the usual offline case (~1 s here)
        return f"cannot resolve {parts.hostname} ({err.strerror or err}), so this machine seems offline"
    except OSError as err:  # refused, unreachable, timed out
        why = err.strerror or str(err) or type(err).__name__
        return f"cannot connect to {parts.hostname}:{port} ({why}), so this machine seems offline"
