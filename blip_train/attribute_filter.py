"""The `--only` filter: frames whose weather, scene or time of day take one of the listed values.

Spelled `weather=snowy,foggy; timeofday=night` (values of one attribute: any of them; several attributes: all of
them), checked against the BDD100K attribute values (`bdd100k.ATTRIBUTE_VALUES`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from blip_train.datasets.records import ATTRIBUTE_VALUES, FrameRecord


def parse_only(text: str | None) -> dict[str, frozenset[str]]:
    """`weather=snowy,foggy; timeofday=night` -> {"weather": {"snowy", "foggy"}, "timeofday": {"night"}}.

    A repeated attribute adds values. ValueError naming --only for an unknown attribute or value, or bad syntax.
    """
    out: dict[str, set[str]] = {}
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, values = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--only expects ATTRIBUTE=VALUE[,VALUE...], got {part!r}")
        if key not in ATTRIBUTE_VALUES:
            raise ValueError(f"--only: unknown attribute {key!r} (known: {', '.join(ATTRIBUTE_VALUES)})")
        chosen = {value.strip() for value in values.split(",") if value.strip()}
        if not chosen:
            raise ValueError(f"--only {part!r}: no value given")
        unknown = sorted(chosen - set(ATTRIBUTE_VALUES[key]))
        if unknown:
            raise ValueError(f"--only: unknown {key} value(s) {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(ATTRIBUTE_VALUES[key])})")
        out.setdefault(key, set()).update(chosen)
    return {key: frozenset(values) for key, values in out.items()}


def describe_only(only: Mapping[str, Collection[str]]) -> str:
    """{"weather": {"snowy", "foggy"}} -> "weather=foggy,snowy" (the --only spelling)."""
    return "; ".join(f"{key}={','.join(sorted(values))}" for key, values in only.items())


def matches_only(frame: FrameRecord, only: Mapping[str, Collection[str]]) -> bool:
    """Whether every attribute listed in `only` takes one of its listed values in `frame`."""
    return all(getattr(frame, key) in values for key, values in only.items())
