"""A STAC API search (pystac-client) whose items become the run's scenes.

``search_items`` asks the API for the items of one or more collections over an area (a
bounding box, or the area of interest as a GeoJSON geometry) in a date window, at most
``max_cloud`` percent cloudy (the query extension's ``eo:cloud_cover``), at most ``limit`` of
them. The API's answer is checked again here: an item outside the date window, or cloudier
than asked, is dropped even if a server ignored that part of the query (items that do not
give a cloud cover are kept: their cloud mask still applies). Items are sorted by date, then
id, so a run's scene order does not depend on the server's paging.

``search_scenes`` turns the items (as JSON, which is what ``run.found_items`` keeps for a
resumed run) into scenes through the same path as a local STAC file (``stac.item_scene``).
Planetary Computer's assets need signed URLs (``sign="planetary-computer"``, with the
optional planetary-computer package): the scene reads the signed URLs, while the journal
knows it by the unsigned ones, so a resumed run's new signatures change nothing.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .scene import Scene
from .stac import _item, item_scene

if TYPE_CHECKING:
    import pystac

    from ..specs import SearchSpec


def _window(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(start, end) of a search's datetime (open ends None); a year, month or day spans all of it."""
    parts = text.split("/")
    if len(parts) == 1:
        parts = [parts[0], parts[0]]
    start = None if parts[0] in ("..", "") else _bound(parts[0], end=False)
    end = None if parts[1] in ("..", "") else _bound(parts[1], end=True)
    return start, end


def _bound(text: str, *, end: bool) -> dt.datetime:
    """The first (or last) instant of a year, month, day or datetime, in UTC."""
    if re.fullmatch(r"\d{4}", text):
        first, nxt = dt.datetime(int(text), 1, 1), dt.datetime(int(text) + 1, 1, 1)
    elif re.fullmatch(r"\d{4}-\d\d", text):
        y, m = (int(v) for v in text.split("-"))
        first, nxt = dt.datetime(y, m, 1), dt.datetime(y + m // 12, m % 12 + 1, 1)
    elif re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        first = dt.datetime.fromisoformat(text)
        nxt = first + dt.timedelta(days=1)
    else:
        return _parse(text)
    value = nxt - dt.timedelta(microseconds=1) if end else first
    return value.replace(tzinfo=dt.timezone.utc)


def _parse(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _in_window(item: dict[str, Any], start: dt.datetime | None, end: dt.datetime | None) -> bool:
    props = item.get("properties") or {}
    first = props.get("start_datetime") or props.get("datetime")
    last = props.get("end_datetime") or props.get("datetime")
    if not first or not last:
        return False
    try:
        a, b = _parse(str(first)), _parse(str(last))
    except ValueError:
        return False
    return (start is None or b >= start) and (end is None or a <= end)


def search_items(search: SearchSpec, intersects: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The items the API finds (JSON dicts, unsigned), checked and sorted (see the module docstring)."""
    import requests
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    url = str(search.stac_api)
    kwargs: dict[str, Any] = {
        "collections": list(search.collection or ()),
        "datetime": search.datetime,
        "max_items": search.limit,
    }
    if intersects is not None:
        kwargs["intersects"] = intersects
    else:
        kwargs["bbox"] = list(search.bbox or ())
    if search.max_cloud is not None:
        kwargs["query"] = {"eo:cloud_cover": {"lte": search.max_cloud}}
    try:
        with warnings.catch_warnings():  # an API without the query extension: checked here alone
            warnings.simplefilter("ignore")
            items = list(Client.open(url).search(**kwargs).items_as_dicts())
    except (APIError, requests.RequestException, NotImplementedError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            "search_failed", field="stac_api", url=url, detail=f"{type(exc).__name__}: {exc}"
        ) from None
    start, end = _window(str(search.datetime))
    items = [i for i in items if isinstance(i, dict) and _in_window(i, start, end)]
    if search.max_cloud is not None:
        items = [i for i in items if _cloud(i) is None or _cloud(i) <= search.max_cloud]  # type: ignore[operator]
    items.sort(key=lambda i: (str((i.get("properties") or {}).get("datetime") or ""), str(i.get("id"))))
    if not items:
        what = f"{search.datetime}" + (
            f", at most {search.max_cloud:g}% cloud" if search.max_cloud is not None else ""
        )
        raise InputError(
            "search_found_nothing",
            field="datetime",
            url=url,
            collection=",".join(search.collection or ()),
            what=what,
        )
    return items[: search.limit] if search.limit else items


def _cloud(item: dict[str, Any]) -> float | None:
    value = (item.get("properties") or {}).get("eo:cloud_cover")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def signer(name: str | None) -> Callable[[pystac.Item], pystac.Item] | None:
    """The function that signs an item's asset URLs (``name``: rules.SignName), or None."""
    if name is None:
        return None
    try:
        import planetary_computer
    except ImportError:
        raise InputError("search_sign_unavailable", field="sign", value=name) from None

    def sign(item: pystac.Item) -> pystac.Item:
        try:
            return planetary_computer.sign(item)
        except Exception as exc:  # noqa: BLE001 - any failure of the signing service: one line
            raise InputError(
                "search_sign_failed",
                field="sign",
                url=item.get_self_href() or item.id,
                detail=f"{type(exc).__name__}: {exc}",
            ) from None

    return sign


def search_scenes(
    items: list[dict[str, Any]],
    search: SearchSpec,
    bands: list[str] | None = None,
    engine: str = "water-index",
    cloud_mask: str = "auto",
) -> list[Scene]:
    """The found items as scenes (ids unique, as ``scenes.resolve_inputs`` makes them)."""
    from .scenes import unique_scenes

    sign = signer(search.sign)
    scenes = []
    base = str(search.stac_api).rstrip("/")
    for doc in items:
        item_id = str(doc.get("id"))
        collection = doc.get("collection") or ",".join(search.collection or ())
        source = f"{base}/collections/{collection}/items/{item_id}"
        item = _item(doc, None, source)
        scenes.append(item_scene(item, source, bands, engine, cloud_mask, sign))
    return unique_scenes(scenes)
