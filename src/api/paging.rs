//! Keyset pagination with opaque page tokens.
//!
//! A token is the base64url of `v1:` and the last id of the previous page. Ids are
//! time-sortable, so "the rows after this id" is stable under concurrent inserts and deletes:
//! no row is returned twice and none that existed throughout is skipped.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ApiError;
use crate::proto::ErrorReason;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A request's page: rows after `after`, at most `size`.
#[derive(Debug, Clone)]
pub struct Page {
    pub after: Option<String>,
    pub size: u32,
}

impl Page {
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, ApiError> {
        let size = match page_size {
            n if n < 0 => {
                return Err(ApiError::invalid("page_size", ErrorReason::InvalidArgument, "must not be negative"));
            }
            0 => DEFAULT_PAGE_SIZE,
            // AIP-158: larger sizes are coerced to the maximum rather than refused.
            n => (n as u32).min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() { None } else { Some(decode(page_token)?) };
        Ok(Self { after, size })
    }

    /// How many rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch(&self) -> u32 {
        self.size + 1
    }

    pub fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// Trims the extra row and returns the token of the next page ("" on the last page).
    pub fn finish<T>(&self, rows: &mut Vec<T>, id_of: impl Fn(&T) -> String) -> String {
        if rows.len() > self.size as usize {
            rows.truncate(self.size as usize);
            rows.last().map(|r| encode(&id_of(r))).unwrap_or_default()
        } else {
            String::new()
        }
    }
}

fn encode(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{last_id}"))
}

fn decode(token: &str) -> Result<String, ApiError> {
    let garbled = || {
        ApiError::invalid("page_token", ErrorReason::InvalidPageToken, "is not a page token returned by this method")
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| garbled())?;
    let text = String::from_utf8(bytes).map_err(|_| garbled())?;
    let id = text.strip_prefix("v1:").ok_or_else(garbled)?;
    if id.is_empty() || id.len() > 200 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(garbled());
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let page = Page::parse(2, "").unwrap();
        let mut rows = vec!["a", "b", "c"];
        let token = page.finish(&mut rows, |r| r.to_string());
        assert_eq!(rows, vec!["a", "b"]);
        assert_eq!(Page::parse(2, &token).unwrap().after(), Some("b"));
        for bad in ["!!", "Zm9v", "djE6"] {
            assert!(
                matches!(
                    Page::parse(2, bad),
                    Err(ApiError::InvalidArgument { reason: ErrorReason::InvalidPageToken, .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(Page::parse(5000, "").unwrap().size, MAX_PAGE_SIZE);
        assert!(Page::parse(-1, "").is_err());
    }
}
