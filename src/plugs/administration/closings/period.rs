//! Business days, months and years as instants, with no I/O. A business day starts at
//! `closing.day_starts_at` (default 00:00) in the business timezone and lasts until the next
//! day starts, so a bar open past midnight closes one business day; a month is its days, the
//! first starting on the 1st, and a year its months. Around a daylight-saving change a day is
//! 23 or 25 hours long; a start that falls into the hour skipped in spring is the first instant
//! after it.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The kinds of closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Day,
    Month,
    Year,
}

impl Kind {
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "day" => Some(Kind::Day),
            "month" => Some(Kind::Month),
            "year" => Some(Kind::Year),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Day => "day",
            Kind::Month => "month",
            Kind::Year => "year",
        }
    }
}

/// `HH:MM` (24-hour clock).
pub fn parse_day_start(text: &str) -> Option<NaiveTime> {
    if text.len() != 5 {
        return None;
    }
    NaiveTime::parse_from_str(text, "%H:%M").ok()
}

/// The instant `date` at `time` begins in `tz` (the first instant after a skipped hour).
fn starts(date: NaiveDate, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let mut local = date.and_time(time);
    loop {
        if let Some(at) = tz.from_local_datetime(&local).earliest() {
            return at.with_timezone(&Utc);
        }
        local += Duration::minutes(1);
    }
}

/// The business day `date`.
pub fn day(date: NaiveDate, day_start: NaiveTime, tz: Tz) -> Period {
    Period {
        start: starts(date, day_start, tz),
        end: starts(date + Duration::days(1), day_start, tz),
    }
}

/// The first day of `date`'s period of `kind`.
pub fn first_day(kind: Kind, date: NaiveDate) -> NaiveDate {
    match kind {
        Kind::Day => date,
        Kind::Month => date.with_day(1).unwrap_or(date),
        Kind::Year => NaiveDate::from_ymd_opt(date.year(), 1, 1).unwrap_or(date),
    }
}

/// The first day after `date`'s period of `kind`.
fn next_first_day(kind: Kind, date: NaiveDate) -> NaiveDate {
    let first = first_day(kind, date);
    match kind {
        Kind::Day => first + Duration::days(1),
        Kind::Month => first
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(first),
        Kind::Year => first
            .checked_add_months(chrono::Months::new(12))
            .unwrap_or(first),
    }
}

/// `date`'s period of `kind`: its first business day's start to the next period's.
pub fn period(kind: Kind, date: NaiveDate, day_start: NaiveTime, tz: Tz) -> Period {
    Period {
        start: day(first_day(kind, date), day_start, tz).start,
        end: day(next_first_day(kind, date), day_start, tz).start,
    }
}

/// The business date `at` falls in.
pub fn business_date(at: DateTime<Utc>, day_start: NaiveTime, tz: Tz) -> NaiveDate {
    let local = at.with_timezone(&tz).naive_local();
    let date = local.date();
    if local.time() < day_start {
        date - Duration::days(1)
    } else {
        date
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn t(text: &str) -> NaiveTime {
        parse_day_start(text).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_bar_open_past_midnight_closes_one_business_day() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let p = day(d(2026, 12, 5), t("04:00"), berlin);
        assert_eq!(p.start, utc("2026-12-05T03:00:00Z"));
        assert_eq!(p.end, utc("2026-12-06T03:00:00Z"));
        // 01:30 on the 6th local is still the 5th's business day.
        assert_eq!(
            business_date(utc("2026-12-06T00:30:00Z"), t("04:00"), berlin),
            d(2026, 12, 5)
        );
        assert_eq!(
            business_date(utc("2026-12-06T03:00:00Z"), t("04:00"), berlin),
            d(2026, 12, 6)
        );
    }

    #[test]
    fn daylight_saving_days_are_23_or_25_hours_and_skipped_starts_move_on() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let spring = day(d(2026, 3, 29), t("00:00"), berlin);
        assert_eq!(spring.end - spring.start, Duration::hours(23));
        let autumn = day(d(2026, 10, 25), t("00:00"), berlin);
        assert_eq!(autumn.end - autumn.start, Duration::hours(25));
        // 02:30 does not exist on 29 March: the day starts at 03:00 local (01:00 UTC).
        assert_eq!(
            day(d(2026, 3, 29), t("02:30"), berlin).start,
            utc("2026-03-29T01:00:00Z")
        );
    }

    #[test]
    fn months_and_years_are_their_days() {
        let utc_tz: Tz = "UTC".parse().unwrap();
        let m = period(Kind::Month, d(2026, 2, 17), t("06:00"), utc_tz);
        assert_eq!(m.start, utc("2026-02-01T06:00:00Z"));
        assert_eq!(m.end, utc("2026-03-01T06:00:00Z"));
        let y = period(Kind::Year, d(2026, 7, 1), t("00:00"), utc_tz);
        assert_eq!(y.start, utc("2026-01-01T00:00:00Z"));
        assert_eq!(y.end, utc("2027-01-01T00:00:00Z"));
        assert!(parse_day_start("4:00").is_none());
        assert!(parse_day_start("24:00").is_none());
        assert_eq!(
            parse_day_start("23:59"),
            Some(NaiveTime::from_hms_opt(23, 59, 0).unwrap())
        );
    }
}
