//! Feed cursors: a position in the log, opaque to clients.
//!
//! A cursor is the base64url of `f1:<project id>:<sequence number>`. Positions are global (one
//! log for all projects), so a quiet project's cursor still moves forward with heartbeats; the
//! project inside lets a cursor of another project be refused instead of silently followed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ApiError;
use crate::proto::ErrorReason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub project: String,
    /// Everything up to and including this sequence number has been accounted for.
    pub seq: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("f1:{}:{}", self.project, self.seq))
    }

    /// Parses `after_cursor` of a watch on `project`.
    pub fn decode(text: &str, project: &str) -> Result<Cursor, ApiError> {
        let invalid = |why: &str| ApiError::invalid("after_cursor", ErrorReason::InvalidCursor, why);
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid("is not a cursor returned by WatchEvents"))?;
        let raw = String::from_utf8(raw).map_err(|_| invalid("is not a cursor returned by WatchEvents"))?;
        let mut parts = raw.splitn(3, ':');
        let (Some("f1"), Some(owner), Some(seq)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("is not a cursor returned by WatchEvents"));
        };
        let seq: i64 =
            seq.parse().ok().filter(|s| *s >= 0).ok_or_else(|| invalid("is not a cursor returned by WatchEvents"))?;
        if owner != project {
            return Err(invalid("belongs to another project"));
        }
        Ok(Cursor { project: owner.to_owned(), seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_projects_and_garbage() {
        let c = Cursor { project: "prj_A".into(), seq: 42 };
        assert_eq!(Cursor::decode(&c.encode(), "prj_A").unwrap(), c);
        for (text, project) in [
            (c.encode(), "prj_B"),
            ("%%%".to_owned(), "prj_A"),
            (URL_SAFE_NO_PAD.encode("f1:prj_A:-1"), "prj_A"),
            (URL_SAFE_NO_PAD.encode("v1:prj_A:1"), "prj_A"),
        ] {
            match Cursor::decode(&text, project) {
                Err(ApiError::InvalidArgument { reason, violations }) => {
                    assert_eq!(reason, ErrorReason::InvalidCursor);
                    assert_eq!(violations[0].field, "after_cursor");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
