"""Tenant and region identifiers, checked with ``fullmatch``.

``securechat.envelope.is_valid_id`` uses ``re.match`` with ``$``, which also accepts one trailing newline
("acme\\n"); ids stored in the tenant database and written to logs must not carry one.
"""

from __future__ import annotations

import re

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")


def is_id(value: object) -> bool:
    """A short printable identifier: what tenant ids and region names are, and what logs may carry."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None
