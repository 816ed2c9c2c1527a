//! Time as plain numbers: [`Millis`] since the Unix epoch (UTC) and [`Day`]
//! numbers since 1970-01-01.
//!
//! Nothing here reads a clock; callers pass the current time in. Conversions
//! to and from calendar dates go through the `time` crate.

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Milliseconds in one day.
pub const DAY_MS: Millis = 86_400_000;

/// A calendar day, counted from 1970-01-01 (day 0).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Day(pub i32);

const UNIX_EPOCH_JULIAN: i32 = 2_440_588;

impl Day {
    /// The day a timestamp falls on (UTC).
    pub fn of_millis(ms: Millis) -> Day {
        Day(ms.div_euclid(DAY_MS) as i32)
    }

    pub fn from_date(date: Date) -> Day {
        Day(date.to_julian_day() - UNIX_EPOCH_JULIAN)
    }

    pub fn to_date(self) -> Date {
        Date::from_julian_day(self.0.saturating_add(UNIX_EPOCH_JULIAN)).unwrap_or(Date::MIN)
    }

    /// Midnight UTC at the start of this day.
    pub fn start_millis(self) -> Millis {
        self.0 as Millis * DAY_MS
    }

    /// Parse an ISO 8601 calendar date (`YYYY-MM-DD`).
    pub fn parse(s: &str) -> Option<Day> {
        // Every signal carries three: read digit by digit when the text has
        // the plain shape, through the time crate's parser otherwise.
        if let Some([y, m, d]) = digits(s.as_bytes(), b"dddd-dd-dd") {
            let month = Month::try_from(m as u8).ok()?;
            return Date::from_calendar_date(y as i32, month, d as u8)
                .ok()
                .map(Day::from_date);
        }
        Self::parse_slow(s)
    }

    fn parse_slow(s: &str) -> Option<Day> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(s, &format).ok().map(Day::from_date)
    }

    /// The same day of month `months` calendar months earlier, clamped to the
    /// month's last day (31 March minus one month is 28 or 29 February).
    pub fn minus_months(self, months: u32) -> Day {
        self.add_months(-(months as i32))
    }

    /// The same day of month `months` calendar months later, clamped to the
    /// month's last day.
    pub fn plus_months(self, months: u32) -> Day {
        self.add_months(months as i32)
    }

    fn add_months(self, months: i32) -> Day {
        let date = self.to_date();
        let total = date.year() * 12 + (date.month() as i32 - 1) + months;
        let year = total.div_euclid(12);
        let month = Month::try_from((total.rem_euclid(12) + 1) as u8).unwrap_or(Month::January);
        let day = date.day().min(time::util::days_in_month(month, year));
        Date::from_calendar_date(year, month, day)
            .map(Day::from_date)
            .unwrap_or(Day(self.0 + 31 * months))
    }

    /// Day of the week: 0 is Monday, 6 is Sunday.
    pub fn weekday(self) -> u8 {
        // 1970-01-01 (day 0) was a Thursday.
        (self.0 + 3).rem_euclid(7) as u8
    }

    pub fn plus_days(self, days: i32) -> Day {
        Day(self.0 + days)
    }
}

/// The municipality's time zone. Contact deadlines, working days and the
/// days feedback is checked against are Dutch calendar days, daylight
/// saving included, not UTC days.
fn amsterdam() -> &'static jiff::tz::TimeZone {
    static TZ: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();
    TZ.get_or_init(|| {
        // The zone comes from the time zone database compiled into the
        // binary (`tzdb-bundle-always`), so this reads no file; a test
        // checks that it is there.
        jiff::tz::TimeZone::get("Europe/Amsterdam")
            .unwrap_or_else(|_| jiff::tz::TimeZone::fixed(jiff::tz::offset(1)))
    })
}

fn zoned(ms: Millis) -> jiff::ZonedDateTime {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(amsterdam().clone())
}

impl Day {
    /// The day a timestamp falls on in Europe/Amsterdam.
    pub fn local_of(ms: Millis) -> Day {
        let d = zoned(ms).date();
        Date::from_calendar_date(
            d.year() as i32,
            Month::try_from(d.month() as u8).unwrap_or(Month::January),
            d.day() as u8,
        )
        .map(Day::from_date)
        .unwrap_or_else(|_| Day::of_millis(ms))
    }

    /// The moment this day begins in Europe/Amsterdam (local midnight).
    pub fn local_start(self) -> Millis {
        let date = self.to_date();
        jiff::civil::Date::new(date.year() as i16, date.month() as i8, date.day() as i8)
            .ok()
            .and_then(|d| d.to_zoned_datetime(amsterdam().clone()).ok())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or_else(|| self.start_millis())
    }
}

/// The Dutch (Europe/Amsterdam) wall-clock hour and minute of `ms`.
pub fn local_hour_minute(ms: Millis) -> (u8, u8) {
    let t = zoned(ms);
    (t.hour() as u8, t.minute() as u8)
}

/// The same local (Europe/Amsterdam) wall-clock time `days` calendar days
/// after `ms`: across a change to or from daylight saving time, 14 days is
/// not 14 × 24 hours.
pub fn plus_local_days(ms: Millis, days: i32) -> Millis {
    zoned(ms)
        .checked_add(jiff::Span::new().days(days as i64))
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(ms + days as Millis * DAY_MS)
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.to_date();
        write!(f, "{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
    }
}

/// The numbers of `text` if it has exactly the `shape`, where `d` is an
/// ASCII digit and any other byte stands for itself: each run of digits is
/// one number, in order. `None` for any other text.
fn digits<const N: usize>(text: &[u8], shape: &[u8]) -> Option<[u32; N]> {
    if text.len() != shape.len() {
        return None;
    }
    let mut out = [0u32; N];
    let mut n = 0;
    let mut in_number = false;
    for (&c, &want) in text.iter().zip(shape) {
        if want == b'd' {
            if !c.is_ascii_digit() {
                return None;
            }
            if !in_number {
                if n == N {
                    return None;
                }
                n += 1;
                in_number = true;
            }
            out[n - 1] = out[n - 1] * 10 + u32::from(c - b'0');
        } else {
            if c != want {
                return None;
            }
            in_number = false;
        }
    }
    (n == N).then_some(out)
}

/// Parse an RFC 3339 timestamp into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    // The shapes Vroeg and most partners write (UTC, whole seconds or
    // milliseconds) are read digit by digit; anything else, and any value
    // out of range (a leap second, say), goes to the time crate's parser.
    let fast = match s.len() {
        24 => digits(s.as_bytes(), b"dddd-dd-ddTdd:dd:dd.dddZ"),
        20 => digits::<6>(s.as_bytes(), b"dddd-dd-ddTdd:dd:ddZ")
            .map(|[y, mo, d, h, mi, se]| [y, mo, d, h, mi, se, 0]),
        _ => None,
    };
    if let Some([y, mo, d, h, mi, se, ms]) = fast {
        if h < 24 && mi < 60 && se < 60 {
            if let Some(day) = Month::try_from(mo as u8)
                .ok()
                .and_then(|month| Date::from_calendar_date(y as i32, month, d as u8).ok())
            {
                let of_day = ((h * 60 + mi) * 60 + se) as Millis * 1000 + ms as Millis;
                return Some(Day::from_date(day).start_millis() + of_day);
            }
        }
    }
    parse_rfc3339_slow(s)
}

fn parse_rfc3339_slow(s: &str) -> Option<Millis> {
    let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as Millis)
}

/// A moment as people write it: an RFC 3339 time, or a day, which is a
/// Dutch calendar day as deadlines count them: 09:00 Dutch time that day,
/// or with `end_of_day` its last millisecond.
pub fn parse_moment(s: &str, end_of_day: bool) -> Option<Millis> {
    if let Some(day) = Day::parse(s) {
        return Some(if end_of_day {
            day.plus_days(1).local_start() - 1
        } else {
            day.local_start() + 9 * 3_600_000
        });
    }
    parse_rfc3339(s)
}

/// Format milliseconds since the epoch as RFC 3339 in UTC, with milliseconds.
pub fn format_rfc3339(ms: Millis) -> String {
    // Every case event carries one: written digit by digit for the years
    // 0000-9999, through the time crate's formatter for anything else.
    let date = Day::of_millis(ms).to_date();
    if (0..=9999).contains(&date.year()) {
        let of_day = ms.rem_euclid(DAY_MS);
        let fields = [
            (date.year() as i64, 4, b'-'),
            (date.month() as i64, 2, b'-'),
            (date.day() as i64, 2, b'T'),
            (of_day / 3_600_000, 2, b':'),
            (of_day / 60_000 % 60, 2, b':'),
            (of_day / 1000 % 60, 2, b'.'),
            (of_day % 1000, 3, b'Z'),
        ];
        let mut out = Vec::with_capacity(24);
        for (value, digits, separator) in fields {
            for place in (0..digits).rev() {
                out.push(b'0' + (value / 10_i64.pow(place) % 10) as u8);
            }
            out.push(separator);
        }
        return String::from_utf8(out).expect("ASCII digits and separators");
    }
    format_rfc3339_slow(ms)
}

fn format_rfc3339_slow(ms: Millis) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_digit_by_digit_equals_the_time_crate() {
        // Every text of the plain shapes built from a few digits per
        // place, valid or not, and some of other shapes.
        let years = ["0000", "0001", "1969", "1970", "2024", "2026", "9999"];
        let months = ["00", "01", "02", "09", "12", "13", "99"];
        let days = ["00", "01", "28", "29", "30", "31", "32"];
        let times = [
            "T00:00:00.000Z",
            "T23:59:59.999Z",
            "T24:00:00.000Z",
            "T12:60:00.000Z",
            "T12:00:60.000Z",
            "T07:00:13Z",
            "T07:00:13.1Z",
            "T07:00:13.158+01:00",
            "t07:00:13.158z",
            "T07:00:13.158",
            "T07:0a:13.158Z",
        ];
        for y in years {
            for m in months {
                for d in days {
                    let day = format!("{y}-{m}-{d}");
                    assert_eq!(Day::parse(&day), Day::parse_slow(&day), "{day}");
                    for t in times {
                        let s = format!("{day}{t}");
                        assert_eq!(parse_rfc3339(&s), parse_rfc3339_slow(&s), "{s}");
                    }
                }
            }
        }
        for s in [
            "",
            "2026-1-01",
            "+2026-01-01",
            "2026-01-01 ",
            "２026-01-01",
            "2026/01/01",
        ] {
            assert_eq!(Day::parse(s), Day::parse_slow(s), "{s:?}");
        }
        assert_eq!(
            parse_rfc3339("2026-01-01T07:00:13.158Z"),
            Some(1_767_250_813_158)
        );
    }

    #[test]
    fn rfc3339_digit_by_digit_equals_the_time_crate() {
        // Across the years 0000-9999, millisecond steps that are not round,
        // before and after 1970, and the edges of the fast path.
        let first = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
        let last = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let step = 7_919_993_377; // about three months, never round
        let mut ms = first;
        while ms <= last {
            assert_eq!(format_rfc3339(ms), format_rfc3339_slow(ms), "{ms}");
            ms += step;
        }
        for ms in [
            first,
            first - 1,
            last,
            last + 1,
            -1,
            0,
            1,
            1_767_225_600_000,
        ] {
            assert_eq!(format_rfc3339(ms), format_rfc3339_slow(ms), "{ms}");
        }
        assert_eq!(
            format_rfc3339(1_767_225_600_123),
            "2026-01-01T00:00:00.123Z"
        );
    }

    #[test]
    fn day_round_trips_through_dates() {
        let d = Day::parse("2026-03-31").unwrap();
        assert_eq!(d.to_string(), "2026-03-31");
        assert_eq!(d.minus_months(1).to_string(), "2026-02-28");
        assert_eq!(d.minus_months(6).to_string(), "2025-09-30");
        assert_eq!(Day::parse("1970-01-01"), Some(Day(0)));
        assert_eq!(Day::parse("2026-02-30"), None);
    }

    #[test]
    fn weekdays() {
        assert_eq!(Day(0).weekday(), 3, "1970-01-01 was a Thursday");
        assert_eq!(Day::parse("2026-11-23").unwrap().weekday(), 0, "a Monday");
        assert_eq!(Day::parse("2026-11-29").unwrap().weekday(), 6, "a Sunday");
    }

    #[test]
    fn local_days_follow_amsterdam_time() {
        assert_ne!(
            amsterdam().iana_name(),
            None,
            "the bundled time zone database has Europe/Amsterdam"
        );
        // 00:47 on Thursday 2026-11-26 in Amsterdam is still Wednesday in UTC.
        let ms = parse_rfc3339("2026-11-26T00:47:00+01:00").unwrap();
        assert_eq!(Day::of_millis(ms).to_string(), "2026-11-25");
        assert_eq!(Day::local_of(ms).to_string(), "2026-11-26");
        // Summer time: midnight is 22:00 UTC the day before.
        let day = Day::parse("2026-07-01").unwrap();
        assert_eq!(
            format_rfc3339(day.local_start()),
            "2026-06-30T22:00:00.000Z"
        );
        assert_eq!(Day::local_of(day.local_start()), day);
        assert_eq!(Day::local_of(day.local_start() - 1), day.plus_days(-1));
        // Across the end of summer time (2026-10-25), 14 days keep the
        // local hour: one hour more than 14 × 24 hours.
        let before = parse_rfc3339("2026-10-20T09:00:00+02:00").unwrap();
        let after = plus_local_days(before, 14);
        assert_eq!(format_rfc3339(after), "2026-11-03T08:00:00.000Z");
        assert_eq!(after - before, 14 * DAY_MS + 3_600_000);
    }

    #[test]
    fn rfc3339_round_trips() {
        let ms = parse_rfc3339("2026-05-01T10:15:30.250+02:00").unwrap();
        assert_eq!(format_rfc3339(ms), "2026-05-01T08:15:30.250Z");
        assert_eq!(Day::of_millis(ms).to_string(), "2026-05-01");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}

/// Serde for a [`Day`] as `YYYY-MM-DD`, for documents people read (the
/// compact stored state keeps the day number).
pub mod day_text {
    use super::Day;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(day: &Day, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(day)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Day, D::Error> {
        let text = String::deserialize(d)?;
        Day::parse(&text).ok_or_else(|| D::Error::custom(format!("not a date: {text:?}")))
    }
}

/// Serde for [`Millis`] as RFC 3339 UTC text.
pub mod millis_text {
    use super::{format_rfc3339, parse_rfc3339, Millis};
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let text = String::deserialize(d)?;
        parse_rfc3339(&text).ok_or_else(|| D::Error::custom(format!("not a time: {text:?}")))
    }
}

/// Serde for `Option<Millis>` as RFC 3339 UTC text or `null`.
pub mod opt_millis_text {
    use super::{format_rfc3339, parse_rfc3339, Millis};
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_some(&format_rfc3339(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => parse_rfc3339(&text)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("not a time: {text:?}"))),
        }
    }
}
