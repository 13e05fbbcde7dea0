"""Compositing periods: calendar months or explicit inclusive date ranges."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date

# The acquisition-date band (pick and medoid): days since the period's start, a byte
DAY_NODATA = 255


@dataclass(frozen=True, order=True)
class Period:
    """One mosaic's time span; `label` is the `period` wildcard."""

    start: date
    end: date
    label: str

    @classmethod
    def month(cls, text: str) -> Period:
        year, month = (int(part) for part in text.split("-"))
        last = calendar.monthrange(year, month)[1]
        return cls(date(year, month, 1), date(year, month, last), text)

    @classmethod
    def date_range(cls, start: date, end: date) -> Period:
        return cls(start, end, f"{start.isoformat()}_{end.isoformat()}")

    @classmethod
    def from_bounds(cls, label: str, bounds: dict) -> Period:
        """The inverse of `bounds()`: how a job gets its period back from its params."""
        return cls(date.fromisoformat(bounds["start"]), date.fromisoformat(bounds["end"]), label)

    def bounds(self) -> dict:
        """Start and end as ISO dates, as a rule hands them to its job."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @property
    def stac_datetime(self) -> str:
        """The STAC datetime interval covering every instant of both end days."""
        return f"{self.start.isoformat()}T00:00:00Z/{self.end.isoformat()}T23:59:59.999999Z"

    @property
    def filename_dates(self) -> str:
        """`YYYY_MM_DD_to_YYYY_MM_DD`, as the reference system names its mosaics."""
        fmt = "%Y_%m_%d"
        return f"{self.start.strftime(fmt)}_to_{self.end.strftime(fmt)}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def day_of(self, when: str) -> int:
        """Days from the period's start to an ISO datetime's (UTC) date."""
        return (date.fromisoformat(when[:10]) - self.start).days

    def overlaps(self, other: Period) -> bool:
        return self.start <= other.end and other.start <= self.end


# Matches both label forms; used as the Snakemake wildcard constraint.
PERIOD_LABEL_PATTERN = r"[0-9]{4}-[0-9]{2}(-[0-9]{2}_[0-9]{4}-[0-9]{2}-[0-9]{2})?"
