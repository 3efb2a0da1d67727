"""QGIS's proxy for what the plugin starts: pip (the worker setup) and the worker's downloads.

The plugin downloads nothing in the QGIS process: the VAE (urllib), the model (huggingface_hub)
and the worker's packages (pip) are fetched by child processes, which read the standard
HTTP(S)_PROXY / NO_PROXY variables. So QGIS's network settings (Settings ▸ Options ▸ Network,
its authentication configuration included) are turned into those variables: a proxy QGIS was
told to use is the one they use. QGIS's "Default proxy" (the system's) and no proxy leave the
environment as it is (the system's proxy is what urllib and pip read there too). The password
travels in the child's environment only: never on a command line, in a log or on screen.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from qgis.core import QgsNetworkAccessManager
from qgis.PyQt.QtNetwork import QNetworkProxy

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_SCHEMES = {
    QNetworkProxy.ProxyType.HttpProxy: "http",
    QNetworkProxy.ProxyType.HttpCachingProxy: "http",
    QNetworkProxy.ProxyType.Socks5Proxy: "socks5h",
}


def proxy_url(proxy: QNetworkProxy) -> str | None:
    """``scheme://[user:password@]host:port`` of a QGIS proxy, None for the system's or none."""
    scheme = _SCHEMES.get(proxy.type())
    host = proxy.hostName().strip()
    if scheme is None or not host:
        return None
    auth = ""
    if proxy.user():
        auth = quote(proxy.user(), safe="") + (
            f":{quote(proxy.password(), safe='')}" if proxy.password() else ""
        )
        auth += "@"
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"{scheme}://{auth}{host}:{proxy.port() or (1080 if scheme == 'socks5h' else 8080)}"


def no_proxy_hosts(urls: list[str]) -> list[str]:
    """The host names of QGIS's "no proxy" and "exclude" URL lists (NO_PROXY takes hosts)."""
    hosts = []
    for url in urls:
        url = url.strip()
        if not url:
            continue
        host = urlsplit(url if "://" in url else f"//{url}").hostname
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def qgis_proxy_env(manager: QgsNetworkAccessManager | None = None) -> dict[str, str]:
    """The proxy variables a child process gets from QGIS's network settings ({} where QGIS uses
    the system's proxy or none: the environment then stays as it is)."""
    manager = manager or QgsNetworkAccessManager.instance()
    if manager.useSystemProxy():
        return {}
    url = proxy_url(manager.fallbackProxy())
    if url is None:
        return {}
    env = {"HTTP_PROXY": url, "HTTPS_PROXY": url, "ALL_PROXY": url}
    env["NO_PROXY"] = ",".join(no_proxy_hosts([*manager.noProxyList(), *manager.excludeList()]))
    return env


def with_qgis_proxy(env: dict[str, str], proxy: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` with QGIS's proxy in place of any the environment named (both spellings: urllib
    reads the lower-case ones first, pip either)."""
    proxy = qgis_proxy_env() if proxy is None else proxy
    if not proxy:
        return env
    env = {k: v for k, v in env.items() if k.upper() not in PROXY_VARS}
    for name, value in proxy.items():
        if value:
            env[name] = env[name.lower()] = value
    return env
