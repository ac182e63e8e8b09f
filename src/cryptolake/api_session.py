"""The HTTP session the CoinGecko client talks through."""

from __future__ import annotations

import os

import requests


def session_for(api_url: str) -> requests.Session:
    """A session whose environment settings (proxies, CA bundle) are read once.

    With `trust_env`, requests reads the proxy variables for every request (about 1 ms each,
    most of a replayed backfill's client time). The client only ever asks one host, so the
    same answer is worked out once: its proxy unless `no_proxy` exempts it, and the CA bundle
    `REQUESTS_CA_BUNDLE` or `CURL_CA_BUNDLE` names.
    """
    session = requests.Session()
    session.trust_env = False
    # Empty when no_proxy exempts the host.
    session.proxies.update(requests.utils.get_environ_proxies(api_url, no_proxy=None))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session
