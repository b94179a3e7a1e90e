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
        let nanos = i128::from(self.0) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.0.to_string())
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
