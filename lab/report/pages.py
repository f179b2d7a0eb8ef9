"""The Jinja2 environment of the report's HTML: templates shipped as package data in
``lab/report/templates``, autoescaping on for every template (results text such as a case's
error can hold ``<`` or ``&``, and must stay text), an undefined name an error rather than an
empty string. The only place the report's markup is written is those templates."""

from __future__ import annotations

import base64

import jinja2


def _b64(data: bytes) -> str:
    """Base64 text of ``data`` (for ``data:`` URLs; it has no character HTML would escape)."""
    return base64.b64encode(data).decode("ascii")


ENVIRONMENT = jinja2.Environment(loader=jinja2.PackageLoader("lab.report", "templates"),
                                 autoescape=True, undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True)
ENVIRONMENT.filters["b64"] = _b64


def render(template: str, **values: object) -> str:
    """The template ``template`` rendered with ``values``."""
    return ENVIRONMENT.get_template(template).render(**values)
