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
        let text = t.rfc3339().to_string();
        assert_eq!(text, "2025-11-21T08:00:00.123Z");
        assert_eq!(UnixMillis::parse_rfc3339(&text), Some(t));
        assert_eq!(UnixMillis::parse_rfc3339("yesterday"), None);
    }
}

/// An instant written as RFC 3339 in UTC (`2026-11-21T12:00:00.25Z`), by the
/// `time` crate into a buffer on the stack, not a `String`: every order in a
/// reply carries three. Instants `time` cannot write come out as their
/// milliseconds. Made by [`UnixMillis::rfc3339`].
#[derive(Clone, Copy, Debug)]
pub struct Rfc3339(UnixMillis);

/// The last instant RFC 3339 can write: 9999-12-31T23:59:59.999Z.
const RFC3339_MILLIS_MAX: i64 = 253_402_300_799_999;

impl Rfc3339 {
    /// The text, written into `buffer`.
    pub fn write<'b>(&self, buffer: &'b mut [u8; 64]) -> &'b str {
        match self.0.0 {
            millis @ 0..=RFC3339_MILLIS_MAX => write_since_1970(millis, buffer),
            _ => self.write_with_time(buffer),
        }
    }

    /// Any instant, by the `time` crate (before 1970 as well), or the
    /// milliseconds where RFC 3339 has no form.
    fn write_with_time<'b>(&self, buffer: &'b mut [u8; 64]) -> &'b str {
        let mut cursor = std::io::Cursor::new(&mut buffer[..]);
        let written =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0.0) * 1_000_000)
                .ok()
                .and_then(|t| {
                    t.format_into(&mut cursor, &time::format_description::well_known::Rfc3339)
                        .ok()
                });
        // The cursor's position: the count `format_into` returns falls short
        // of what it wrote when there are fractional seconds.
        let length = cursor.position() as usize;
        match written {
            Some(_) => {
                std::str::from_utf8(&buffer[..length]).expect("RFC 3339 is written in ASCII")
            }
            None => {
                let mut digits = itoa::Buffer::new();
                let text = digits.format(self.0.0);
                buffer[..text.len()].copy_from_slice(text.as_bytes());
                std::str::from_utf8(&buffer[..text.len()]).expect("digits are ASCII")
            }
        }
    }
}

/// `millis` (1970 to 9999) as `time` writes RFC 3339 in UTC, without its
/// formatting machinery: every reply with an instant writes a few (an order's
/// three were 2.0k instructions through `time`). A property test holds the two
/// to the same text.
fn write_since_1970(millis: i64, buffer: &mut [u8; 64]) -> &str {
    debug_assert!((0..=RFC3339_MILLIS_MAX).contains(&millis));
    let (days, millis_of_day) = (millis / 86_400_000, millis % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let seconds_of_day = millis_of_day / 1000;
    let fields = [
        (year / 100, 0),
        (year % 100, b'-'),
        (month, b'-'),
        (day, b'T'),
        (seconds_of_day / 3600, b':'),
        (seconds_of_day / 60 % 60, b':'),
        (seconds_of_day % 60, 0),
    ];
    let mut at = 0;
    for (value, after) in fields {
        buffer[at] = b'0' + (value / 10) as u8;
        buffer[at + 1] = b'0' + (value % 10) as u8;
        at += 2;
        if after != 0 {
            buffer[at] = after;
            at += 1;
        }
    }
    // Milliseconds as `time` writes them: none when zero, trailing zeros cut.
    let mut fraction = millis_of_day % 1000;
    if fraction != 0 {
        let mut digits = 3;
        while fraction % 10 == 0 {
            fraction /= 10;
            digits -= 1;
        }
        buffer[at] = b'.';
        for place in (0..digits).rev() {
            buffer[at + 1 + place] = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        at += 1 + digits;
    }
    buffer[at] = b'Z';
    std::str::from_utf8(&buffer[..at + 1]).expect("digits and separators are ASCII")
}

/// Year, month and day of `days` since 1970-01-01 (days >= 0): Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.write(&mut [0u8; 64]))
    }
}

#[cfg(test)]
mod rfc3339_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The direct writer is `time`'s RFC 3339, character for character:
        /// across the whole range, and around days, years and leap days.
        #[test]
        fn written_as_time_writes_it(
            millis in prop_oneof![
                0i64..=RFC3339_MILLIS_MAX,
                (0i64..=RFC3339_MILLIS_MAX / 86_400_000, -2i64..=2)
                    .prop_map(|(day, off)| (day * 86_400_000 + off).clamp(0, RFC3339_MILLIS_MAX)),
            ]
        ) {
            let instant = Rfc3339(UnixMillis(millis));
            let (mut direct, mut by_time) = ([0u8; 64], [0u8; 64]);
            prop_assert_eq!(
                instant.write(&mut direct),
                instant.write_with_time(&mut by_time)
            );
        }

        #[test]
        fn round_trips(millis in 0i64..253_402_300_799_999) {
            let instant = UnixMillis(millis);
            prop_assert_eq!(UnixMillis::parse_rfc3339(&instant.rfc3339().to_string()), Some(instant));
        }
    }

    #[test]
    fn fractions_and_edges() {
        assert_eq!(
            UnixMillis(1_763_726_400_250).rfc3339().to_string(),
            "2025-11-21T12:00:00.25Z"
        );
        assert_eq!(UnixMillis(0).rfc3339().to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            UnixMillis(-1).rfc3339().to_string(),
            "1969-12-31T23:59:59.999Z"
        );
        for (millis, text) in [
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
            (RFC3339_MILLIS_MAX, "9999-12-31T23:59:59.999Z"),
            (1_000, "1970-01-01T00:00:01Z"),
            (10, "1970-01-01T00:00:00.01Z"),
        ] {
            assert_eq!(UnixMillis(millis).rfc3339().to_string(), text);
        }
        // Past year 9999, RFC 3339 has no form: the milliseconds.
        assert_eq!(
            UnixMillis(253_402_300_800_000).rfc3339().to_string(),
            "253402300800000"
        );
    }
}
