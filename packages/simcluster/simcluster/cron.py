"""Standard 5-field cron schedules (``*/5 * * * *``, ``@hourly``), evaluated in UTC."""

from __future__ import annotations

import datetime as dt

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


class CronError(ValueError):
    """The schedule is not a valid cron expression."""


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(base)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise CronError(f"value out of range in {text!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse(schedule: str) -> tuple[frozenset[int], ...]:
    """Minute, hour, day-of-month, month, day-of-week sets (Sunday = 0; 7 also Sunday)."""
    text = MACROS.get(schedule.strip(), schedule.strip())
    if text.startswith("TZ=") or text.startswith("CRON_TZ="):
        text = text.split(None, 1)[1]
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"expected 5 fields, found {len(parts)}: {schedule!r}")
    try:
        fields = [
            _field(p.replace("7", "0") if i == 4 else p, lo, hi)
            for i, (p, (lo, hi)) in enumerate(zip(parts, RANGES, strict=True))
        ]
    except ValueError as exc:
        raise CronError(f"invalid schedule {schedule!r}: {exc}") from None
    return tuple(fields)


def _matches(fields: tuple[frozenset[int], ...], t: dt.datetime) -> bool:
    minute, hour, dom, month, dow = fields
    weekday = (t.weekday() + 1) % 7
    return (
        t.minute in minute
        and t.hour in hour
        and t.day in dom
        and t.month in month
        and weekday in dow
    )


def next_after(schedule: str, after: dt.datetime, limit_days: int = 366) -> dt.datetime | None:
    """The first scheduled minute strictly after ``after`` (None within ``limit_days``)."""
    fields = parse(schedule)
    t = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    end = after + dt.timedelta(days=limit_days)
    while t <= end:
        if _matches(fields, t):
            return t
        t += dt.timedelta(minutes=1)
    return None


def last_due(schedule: str, after: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The latest scheduled minute in ``(after, now]``, if any."""
    last = None
    t = next_after(schedule, after)
    while t is not None and t <= now:
        last = t
        t = next_after(schedule, t)
    return last
