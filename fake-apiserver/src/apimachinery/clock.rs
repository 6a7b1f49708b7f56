//! The server's time source: every timestamp the server writes
//! (`creationTimestamp`, `deletionTimestamp`, condition times) comes from here.
//!
//! A `Clock` is the wall clock, a fixed instant, or anchored to tokio's clock so
//! that a test on a paused runtime moves the server's time when it advances
//! virtual time.

use std::sync::Arc;

use jiff::Timestamp;

/// Where the server's time comes from.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The machine's wall clock.
    System,
    /// Always the same instant (seconds since the Unix epoch).
    Fixed(i64),
    /// A wall-clock anchor plus tokio's elapsed time since the anchor was taken,
    /// so that `tokio::time::advance` on a paused runtime moves this clock too.
    Tokio(Arc<TokioAnchor>),
}

/// The anchor of a [`Clock::Tokio`].
#[derive(Debug)]
pub struct TokioAnchor {
    epoch_seconds: i64,
    instant: tokio::time::Instant,
}

impl Clock {
    /// A clock that starts at `epoch_seconds` and follows tokio's clock from now.
    ///
    /// Must be called within a tokio runtime.
    pub fn tokio_from(epoch_seconds: i64) -> Self {
        Clock::Tokio(Arc::new(TokioAnchor {
            epoch_seconds,
            instant: tokio::time::Instant::now(),
        }))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Fixed(secs) => Timestamp::from_second(*secs).unwrap_or(Timestamp::UNIX_EPOCH),
            Clock::Tokio(anchor) => {
                let elapsed = anchor.instant.elapsed();
                let secs = anchor.epoch_seconds + elapsed.as_secs() as i64;
                Timestamp::new(secs, elapsed.subsec_nanos() as i32).unwrap_or(Timestamp::UNIX_EPOCH)
            }
        }
    }

    /// The current time as Kubernetes writes `metav1.Time`: RFC 3339, whole seconds, UTC.
    pub fn rfc3339(&self) -> String {
        format_time(self.now())
    }

    /// The current time as `metav1.MicroTime` (events.k8s.io `eventTime`, Lease times).
    pub fn rfc3339_micros(&self) -> String {
        self.now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
    }
}

/// Formats a timestamp as `metav1.Time` (seconds precision, `Z` suffix).
pub fn format_time(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a `metav1.Time`; `None` when it is not RFC 3339.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_should_format_like_metav1_time() {
        assert_eq!(Clock::Fixed(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Clock::Fixed(1_700_000_000).rfc3339_micros(),
            "2023-11-14T22:13:20.000000Z"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_should_follow_virtual_time() {
        let clock = Clock::tokio_from(1_000);
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(clock.now().as_second(), 1_090);
    }
}
