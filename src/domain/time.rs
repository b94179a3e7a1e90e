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

impl Rfc3339 {
    /// The text, written into `buffer`.
    pub fn write<'b>(&self, buffer: &'b mut [u8; 64]) -> &'b str {
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
        // Past year 9999, RFC 3339 has no form: the milliseconds.
        assert_eq!(
            UnixMillis(253_402_300_800_000).rfc3339().to_string(),
            "253402300800000"
        );
    }
}
