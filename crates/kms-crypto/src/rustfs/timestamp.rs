//! RustFS's timestamps: jiff `Zoned` in RFC 9557 form (`2026-12-02T10:54:59.308289095+00:00[Etc/UTC]`)
//! or plain RFC 3339.
//!
//! The bracketed zone annotation is the writing process's time zone and says nothing the offset
//! does not already say about the instant, so any annotation is accepted and dropped; the
//! offset is what fixes the instant.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::RustfsError;

/// The instant of a RustFS timestamp string; `field` names it in the error.
pub(crate) fn parse(value: &str, field: &'static str) -> Result<OffsetDateTime, RustfsError> {
    let instant = match value.find('[') {
        Some(open) if value.ends_with(']') && open + 2 < value.len() => &value[..open],
        Some(_) => return Err(RustfsError::Malformed(field)),
        None => value,
    };
    OffsetDateTime::parse(instant, &Rfc3339).map_err(|_| RustfsError::Malformed(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_zoned_and_plain_forms_to_the_same_instant() {
        let expected = OffsetDateTime::from_unix_timestamp_nanos(1_796_208_899_308_289_095).unwrap();
        for text in [
            "2026-12-02T10:54:59.308289095+00:00[Etc/UTC]",
            "2026-12-02T10:54:59.308289095+00:00[UTC]",
            "2026-12-02T11:54:59.308289095+01:00[Europe/Paris]",
            "2026-12-02T10:54:59.308289095Z",
        ] {
            assert_eq!(parse(text, "created_at").unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn refuses_broken_annotations_and_non_timestamps() {
        for text in ["", "yesterday", "2026-12-02T10:54:59Z[", "2026-12-02T10:54:59Z[]", "2026-12-02T10:54:59Z[UTC]x"] {
            assert_eq!(parse(text, "created_at"), Err(RustfsError::Malformed("created_at")), "{text}");
        }
    }
}
