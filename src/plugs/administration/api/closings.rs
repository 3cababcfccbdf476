//! `administration.closings` for other modules: the business day (from `closing.day_starts_at`
//! and the business timezone).

use chrono::{DateTime, NaiveDate, Utc};

use crate::core::settings::Business;
pub use crate::plugs::administration::closings::http::day_start;
use crate::plugs::administration::closings::period;
pub use crate::plugs::administration::closings::period::Period;

/// The business date `at` falls in.
pub fn business_date(business: &Business, at: DateTime<Utc>) -> NaiveDate {
    period::business_date(at, day_start(business), business.timezone)
}

/// Business day `date` as instants.
pub fn business_day(business: &Business, date: NaiveDate) -> Period {
    period::day(date, day_start(business), business.timezone)
}
