"""Where `callvault serve` listens, kept in the data dir so commands run beside it (``callvault show``)
make links to the port it really uses, not a default."""

from pathlib import Path

SERVED_URL_FILE = "served-url"


def served_url(host: str, port: int) -> str:
    """The URL a browser on this machine reaches the server at (a wildcard host is reached on loopback)."""
    reach = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://[{reach}]:{port}" if ":" in reach else f"http://{reach}:{port}"


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a name is resolved by the OS; "localhost" is)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: assume others can reach it


def record_served_url(data_dir: Path, url: str) -> None:
    target = data_dir / SERVED_URL_FILE
    temp = data_dir / f".tmp-{SERVED_URL_FILE}"
    temp.write_text(url + "\n", encoding="utf-8")
    temp.replace(target)


def recorded_served_url(data_dir: Path) -> str | None:
    """The URL the last `serve` of this data dir listened on, if any."""
    try:
        text = (data_dir / SERVED_URL_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text if text.startswith(("http://", "https://")) else None
