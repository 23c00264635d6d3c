//! `?limit=&page_token=` for list routes.
//!
//! Page tokens are cursors (the last id of the previous page), hex-encoded
//! with a version prefix so clients treat them as opaque and the format
//! can change without breaking old tokens silently.

use super::extract::QueryParams;
use super::HttpError;
use crate::store::MAX_PAGE_SIZE;

/// Page size when the client does not ask for one.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

const TOKEN_PREFIX: &str = "c1:";

#[derive(Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// Exclusive lower bound for ids, from the page token.
    pub after: Option<String>,
}

impl PageRequest {
    pub fn from_query(query: &QueryParams) -> Result<Self, HttpError> {
        let limit = match query.int::<i64>("limit")? {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if (1..=i64::from(MAX_PAGE_SIZE)).contains(&n) => n as u32,
            Some(n) => {
                return Err(HttpError::invalid_field(
                    "limit",
                    format!("limit must be between 1 and {MAX_PAGE_SIZE}, got {n}"),
                ))
            }
        };
        let after = match query.get("page_token") {
            None | Some("") => None,
            Some(token) => Some(decode(token).ok_or_else(|| {
                HttpError::invalid_field(
                    "page_token",
                    "page_token is not a token returned as next_page_token by this API",
                )
            })?),
        };
        Ok(PageRequest { limit, after })
    }
}

/// One page of a list fetched with `limit + 1` rows: the extra row only
/// tells that another page exists, so the last page never comes with a
/// token that leads to an empty page.
pub fn paged<T, W>(
    mut rows: Vec<T>,
    limit: u32,
    id: impl Fn(&T) -> &str,
    to_wire: impl FnMut(T) -> W,
) -> fleet_api::Page<W> {
    let next_page_token = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| token_after(id(r)))
    } else {
        None
    };
    fleet_api::Page {
        items: rows.into_iter().map(to_wire).collect(),
        next_page_token,
    }
}

/// The token that continues after `last_id`.
pub fn token_after(last_id: &str) -> String {
    hex::encode(format!("{TOKEN_PREFIX}{last_id}"))
}

fn decode(token: &str) -> Option<String> {
    let bytes = hex::decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.strip_prefix(TOKEN_PREFIX)?;
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let t = token_after("0193-abc");
        assert_eq!(decode(&t).as_deref(), Some("0193-abc"));
        assert_eq!(decode("zz"), None);
        assert_eq!(decode(&hex::encode("x1:abc")), None);
    }
}
