//! RFC 3339 timestamps, for every crate that writes one: journals, write records, reports,
//! bus events, ledger entries, the emulators' stamps.
//!
//! These functions format a time they are given; reading the clock is the caller's
//! business, so the domain stays free of it. Every form is UTC with `Z`, so one instant has
//! one spelling. They differ only in the fraction of a second:
//!
//! | function            | example                          |
//! | ------------------- | -------------------------------- |
//! | [`rfc3339`]         | `2026-01-02T03:04:05.25Z`        |
//! | [`rfc3339_seconds`] | `2026-01-02T03:04:05Z`           |
//! | [`rfc3339_millis`]  | `2026-01-02T03:04:05.250Z`       |
//! | [`rfc3339_micros`]  | `2026-01-02T03:04:05.250000Z`    |
//!
//! [`rfc3339`] writes exactly what the `time` crate's `Rfc3339` format writes for a UTC
//! time; the fixed-width forms sort as text in time order. None of them fails: a year
//! outside 0000–9999, which RFC 3339 cannot spell, comes out as `{:04}` prints it (`-001`).
//! [`checked_rfc3339`] refuses such a year instead.
//!
//! Each converts its input to UTC first, which panics, as `OffsetDateTime::to_offset` does,
//! only when the UTC date falls outside the years the `time` crate represents.

use std::fmt::Write as _;

use ::time::{OffsetDateTime, UtcOffset};

/// How much of the second to write.
#[derive(Clone, Copy)]
enum Fraction {
    /// None: whole seconds.
    None,
    /// As many digits as the nanoseconds need, none when they are zero.
    Trimmed,
    /// Exactly this many digits (1 to 9), truncated.
    Fixed(u32),
}

fn write(at: OffsetDateTime, fraction: Fraction) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    let mut out = String::with_capacity(32);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let nanos = at.nanosecond();
    match fraction {
        Fraction::None => {}
        Fraction::Trimmed if nanos == 0 => {}
        Fraction::Trimmed => {
            let (mut value, mut width) = (nanos, 9);
            while value % 10 == 0 {
                value /= 10;
                width -= 1;
            }
            let _ = write!(out, ".{value:0width$}");
        }
        Fraction::Fixed(digits) => {
            let value = nanos / 10u32.pow(9 - digits);
            let _ = write!(out, ".{value:0width$}", width = digits as usize);
        }
    }
    out.push('Z');
    out
}

/// RFC 3339 in UTC, with the fraction of a second only as long as it needs to be and none
/// when it is zero (the `time` crate's `Rfc3339`): `2026-01-02T03:04:05.25Z`.
pub fn rfc3339(at: OffsetDateTime) -> String {
    write(at, Fraction::Trimmed)
}

/// [`rfc3339`], or `None` when the year (in UTC) is outside 0000–9999, which RFC 3339
/// cannot spell: for stores that must refuse what they could not write back faithfully.
pub fn checked_rfc3339(at: OffsetDateTime) -> Option<String> {
    (0..10_000)
        .contains(&at.to_offset(UtcOffset::UTC).year())
        .then(|| rfc3339(at))
}

/// RFC 3339 in UTC to the second: `2026-01-02T03:04:05Z`.
pub fn rfc3339_seconds(at: OffsetDateTime) -> String {
    write(at, Fraction::None)
}

/// RFC 3339 in UTC with milliseconds, truncated: `2026-01-02T03:04:05.250Z`.
pub fn rfc3339_millis(at: OffsetDateTime) -> String {
    write(at, Fraction::Fixed(3))
}

/// RFC 3339 in UTC with microseconds, truncated: `2026-01-02T03:04:05.250000Z`.
pub fn rfc3339_micros(at: OffsetDateTime) -> String {
    write(at, Fraction::Fixed(6))
}

#[cfg(test)]
mod tests {
    use ::time::format_description::well_known::Rfc3339;
    use ::time::macros::{datetime, format_description};
    use ::time::{Duration, OffsetDateTime, UtcOffset};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn each_precision() {
        let at = datetime!(2026-01-02 03:04:05.25 UTC);
        assert_eq!(rfc3339(at), "2026-01-02T03:04:05.25Z");
        assert_eq!(rfc3339_seconds(at), "2026-01-02T03:04:05Z");
        assert_eq!(rfc3339_millis(at), "2026-01-02T03:04:05.250Z");
        assert_eq!(rfc3339_micros(at), "2026-01-02T03:04:05.250000Z");
        let whole = datetime!(2026-01-02 03:04:05 UTC);
        assert_eq!(rfc3339(whole), "2026-01-02T03:04:05Z");
        assert_eq!(rfc3339_micros(whole), "2026-01-02T03:04:05.000000Z");
    }

    #[test]
    fn other_offsets_are_written_in_utc() {
        let at = datetime!(2026-01-02 05:04:05.000000999 +02:00);
        assert_eq!(rfc3339(at), "2026-01-02T03:04:05.000000999Z");
        assert_eq!(rfc3339_micros(at), "2026-01-02T03:04:05.000000Z");
    }

    #[test]
    fn before_the_epoch_and_outside_rfc_3339() {
        let at = OffsetDateTime::UNIX_EPOCH - Duration::microseconds(5);
        assert_eq!(rfc3339_micros(at), "1969-12-31T23:59:59.999995Z");
        let ancient = datetime!(-0001-06-01 00:00 UTC);
        assert_eq!(rfc3339_seconds(ancient), "-001-06-01T00:00:00Z");
        assert_eq!(checked_rfc3339(ancient), None);
        assert_eq!(
            checked_rfc3339(datetime!(0000-01-01 00:00 UTC)).as_deref(),
            Some("0000-01-01T00:00:00Z")
        );
        assert_eq!(
            checked_rfc3339(datetime!(9999-12-31 23:59:59.5 UTC)).as_deref(),
            Some("9999-12-31T23:59:59.5Z")
        );
    }

    /// Instants from 0000-01-01 to 9999-12-31, to the nanosecond, in a few offsets.
    fn instant() -> impl Strategy<Value = OffsetDateTime> {
        let first = datetime!(0000-01-02 00:00 UTC).unix_timestamp_nanos();
        let last = datetime!(9999-12-30 00:00 UTC).unix_timestamp_nanos();
        (first..last, prop::sample::select(vec![0i8, 2, -5, 14])).prop_map(|(nanos, hours)| {
            let offset = UtcOffset::from_hms(hours, 0, 0).expect("offset");
            OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .expect("in range")
                .to_offset(offset)
        })
    }

    proptest! {
        #[test]
        fn matches_the_time_crate(at in instant()) {
            let utc = at.to_offset(UtcOffset::UTC);
            prop_assert_eq!(rfc3339(at), utc.format(&Rfc3339).expect("formats"));
            prop_assert_eq!(checked_rfc3339(at), Some(rfc3339(at)));
            let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
            prop_assert_eq!(rfc3339_seconds(at), utc.format(seconds).expect("formats"));
            let millis = format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            );
            prop_assert_eq!(rfc3339_millis(at), utc.format(millis).expect("formats"));
            let micros = format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
            );
            prop_assert_eq!(rfc3339_micros(at), utc.format(micros).expect("formats"));
            // The fixed-width forms sort as text in time order.
            let later = at + Duration::microseconds(1);
            prop_assert!(rfc3339_micros(at) < rfc3339_micros(later));
        }
    }
}
