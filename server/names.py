"""The one pattern for names clients choose (datasets, models): safe as a folder name, never a path."""

from __future__ import annotations

import re

from artdet.detector.errors import InvalidArgument, show

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str, field: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise InvalidArgument(f"{field}: {show(name, 40)} must be 1-64 characters of letters, digits, '.', '_' or '-', "
                              "starting with a letter or digit")
    return name
