//! Wall-clock instants as milliseconds since the Unix epoch: the one time type that
//! is stored, compared and sent. Formatting to RFC 3339 happens at the HTTP edge.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is set after 1970");
        UnixMillis(since_epoch.as_millis() as i64)
    }

    pub fn plus(self, duration: Duration) -> Self {
        UnixMillis(self.0.saturating_add(duration.as_millis() as i64))
    }

    pub fn minus(self, duration: Duration) -> Self {
        UnixMillis(self.0.saturating_sub(duration.as_millis() as i64))
    }

    /// How long from `self` until `later` (zero if `later` is not after `self`).
    pub fn until(self, later: UnixMillis) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0).max(0) as u64)
    }

    pub fn to_rfc3339(self) -> String {
        Rfc3339(self).to_string()
    }

    /// RFC 3339 through the `time` crate: the reference `Rfc3339` agrees with,
    /// and the form of instants outside years 1..=9999.
    fn to_rfc3339_slow(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.0.to_string())
    }

    pub fn rfc3339(self) -> Rfc3339 {
        Rfc3339(self)
    }

    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()?;
        let millis = t.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(millis).ok().map(UnixMillis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_milliseconds() {
        let t = UnixMillis(1_763_712_000_123);
        let text = t.to_rfc3339();
        assert_eq!(text, "2025-11-21T08:00:00.123Z");
        assert_eq!(UnixMillis::parse_rfc3339(&text), Some(t));
        assert_eq!(UnixMillis::parse_rfc3339("yesterday"), None);
    }
}

/// An instant written as RFC 3339 in UTC (`2026-11-21T12:00:00.25Z`: fraction
/// only when not zero, trailing zeros dropped), exactly as the `time` crate
/// writes it, without allocating: every order in a reply carries three.
#[derive(Clone, Copy, Debug)]
pub struct Rfc3339(pub UnixMillis);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let millis = self.0.0;
        let seconds = millis.div_euclid(1000);
        let fraction = millis.rem_euclid(1000) as u32;
        let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        if !(1..=9999).contains(&year) {
            return f.write_str(&self.0.to_rfc3339_slow());
        }
        let mut out = [0u8; 24];
        let mut put = |at: usize, value: u32, digits: usize| {
            let mut value = value;
            for i in (0..digits).rev() {
                out[at + i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, year as u32, 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, (second_of_day / 3600) as u32, 2);
        put(14, (second_of_day / 60 % 60) as u32, 2);
        put(17, (second_of_day % 60) as u32, 2);
        let digits = match fraction {
            0 => 0,
            f if f % 100 == 0 => 1,
            f if f % 10 == 0 => 2,
            _ => 3,
        };
        put(20, fraction / 10u32.pow(3 - digits as u32), digits);
        for (at, separator) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
        ] {
            out[at] = separator;
        }
        let end = if digits == 0 { 19 } else { 20 + digits };
        out[end] = b'Z';
        f.write_str(std::str::from_utf8(&out[..=end]).expect("ASCII digits and separators"))
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod rfc3339_tests {
    use super::*;
    use proptest::prelude::*;

    /// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
    const FIRST: i64 = -62_135_596_800_000;
    const LAST: i64 = 253_402_300_799_999;

    proptest! {
        #[test]
        fn agrees_with_the_time_crate(millis in FIRST..=LAST) {
            let instant = UnixMillis(millis);
            prop_assert_eq!(instant.rfc3339().to_string(), instant.to_rfc3339_slow());
        }

        #[test]
        fn round_trips_near_now(millis in 0i64..4_102_444_800_000) {
            let instant = UnixMillis(millis);
            prop_assert_eq!(UnixMillis::parse_rfc3339(&instant.to_rfc3339()), Some(instant));
        }
    }

    #[test]
    fn edges_and_fractions() {
        for millis in [
            FIRST,
            LAST,
            0,
            -1,
            1,
            10,
            100,
            120,
            999,
            951_782_400_000,
            1_763_726_400_250,
        ] {
            let instant = UnixMillis(millis);
            assert_eq!(
                instant.rfc3339().to_string(),
                instant.to_rfc3339_slow(),
                "{millis}"
            );
        }
        assert_eq!(
            UnixMillis(1_763_726_400_250).to_rfc3339(),
            "2025-11-21T12:00:00.25Z"
        );
        assert_eq!(UnixMillis(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        // Outside years 1..=9999 the slow path answers, as before.
        assert_eq!(
            UnixMillis(LAST + 1).to_rfc3339(),
            UnixMillis(LAST + 1).to_rfc3339_slow()
        );
    }
}
