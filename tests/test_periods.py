"""s2basemap.periods: months and date ranges, and how a job gets its period back."""

from __future__ import annotations

from datetime import date

from s2basemap.periods import Period


def test_a_month_covers_every_day_of_it():
    february = Period.month("2024-02")
    assert (february.start, february.end, february.label) == (
        date(2024, 2, 1),
        date(2024, 2, 29),
        "2024-02",
    )
    assert february.stac_datetime == "2024-02-01T00:00:00Z/2024-02-29T23:59:59.999999Z"
    assert february.filename_dates == "2024_02_01_to_2024_02_29"


def test_a_date_range_is_labelled_by_its_ends_and_overlaps_by_days():
    spring = Period.date_range(date(2025, 3, 20), date(2025, 6, 20))
    assert spring.label == "2025-03-20_2025-06-20"
    assert spring.overlaps(Period.month("2025-06"))
    assert not spring.overlaps(Period.month("2025-07"))


def test_a_job_gets_the_same_period_back_from_its_bounds():
    for period in (Period.month("2022-01"), Period.date_range(date(2022, 1, 3), date(2022, 2, 9))):
        bounds = period.bounds()
        assert bounds == {"start": period.start.isoformat(), "end": period.end.isoformat()}
        assert Period.from_bounds(period.label, bounds) == period
