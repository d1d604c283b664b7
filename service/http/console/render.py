"""Pages rendered with Jinja2 from the templates shipped in this package, autoescaped."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from service.http.console.keys import SESSION, TEMPLATES


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("service.http.console", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.ChainableUndefined,  # resources are JSON: optional attributes render empty
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["query"] = query
    env.filters["person_name"] = person_name
    env.filters["primary_email"] = primary_email
    env.filters["pretty"] = pretty
    return env


def person_name(resource: dict[str, Any]) -> str:
    """displayName, else the name's formatted, else given and family names."""
    raw = resource.get("name")
    name: dict[str, Any] = raw if isinstance(raw, dict) else {}
    for candidate in (resource.get("displayName"), name.get("formatted")):
        if isinstance(candidate, str) and candidate:
            return candidate
    parts = [name.get("givenName"), name.get("familyName")]
    return " ".join(p for p in parts if isinstance(p, str) and p)


def primary_email(resource: dict[str, Any]) -> str:
    emails = [e for e in resource.get("emails") or [] if isinstance(e, dict) and e.get("value")]
    chosen = next((e for e in emails if e.get("primary") is True), emails[0] if emails else None)
    return str(chosen["value"]) if chosen else ""


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def when(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def query(params: dict[str, Any], **changes: Any) -> str:
    """A query string of `params` with `changes` applied; empty values are left out."""
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def render(request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200) -> web.Response:
    env = request.config_dict[TEMPLATES]
    session = request.get(SESSION)
    values: dict[str, Any] = {"session": session, "csrf": session.csrf if session else "", "path": request.path}
    values.update(context or {})
    html = env.get_template(template).render(values)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
