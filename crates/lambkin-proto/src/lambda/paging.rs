//! Paged lists as the Lambda API pages them (`Marker`, `MaxItems`, `NextMarker`):
//! ListFunctions and ListFunctionUrlConfigs.
//!
//! A marker names the last entry of the page before, opaquely (base64url of its key), so a
//! walk survives entries added or deleted between pages: the next page starts after that key
//! whether or not it is still there. A marker this API could not have issued is refused with
//! a message naming it, never taken for the start of the list.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::error::ApiError;

/// One page's request: the entries after `after`, at most `max_items` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    after: Option<String>,
    max_items: Option<usize>,
}

impl Paging {
    /// `marker` and `max_items` as the query gives them; `max` is the operation's upper bound
    /// for `MaxItems` (AWS's: 50 for ListFunctionUrlConfigs, 10,000 for ListFunctions).
    pub fn parse(
        operation: &str,
        marker: Option<&str>,
        max_items: Option<&str>,
        max: usize,
    ) -> Result<Self, ApiError> {
        let max_items = max_items
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::InvalidParameterValue(format!(
                            "{operation}: MaxItems {v:?} must be a whole number from 1 to {max}"
                        ))
                    })
            })
            .transpose()?;
        let after = match marker.filter(|m| !m.is_empty()) {
            None => None,
            Some(m) => Some(
                URL_SAFE_NO_PAD
                    .decode(m)
                    .ok()
                    .and_then(|key| String::from_utf8(key).ok())
                    .filter(|key| !key.is_empty())
                    .ok_or_else(|| {
                        ApiError::InvalidParameterValue(format!(
                            "{operation}: Marker {m:?} is not one a previous page of {operation} returned"
                        ))
                    })?,
            ),
        };
        Ok(Self { after, max_items })
    }

    /// This page of `all` (entries with their keys, listed in key order) and the marker of
    /// the next page, if more entries follow. Without `MaxItems`, every entry after the marker.
    pub fn take<T>(&self, all: impl IntoIterator<Item = (String, T)>) -> (Vec<T>, Option<String>) {
        let mut all: Vec<(String, T)> = all.into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rest = all
            .into_iter()
            .filter(|(key, _)| self.after.as_ref().is_none_or(|after| key > after))
            .peekable();
        let mut page = Vec::new();
        let mut last = None;
        while let Some((key, item)) =
            rest.next_if(|_| self.max_items.is_none_or(|n| page.len() < n))
        {
            page.push(item);
            last = Some(key);
        }
        let next = rest
            .peek()
            .is_some()
            .then(|| last.map(|key| URL_SAFE_NO_PAD.encode(key)))
            .flatten();
        (page, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(keys: &[&str]) -> Vec<(String, String)> {
        keys.iter()
            .map(|k| (k.to_string(), k.to_string()))
            .collect()
    }

    #[test]
    fn pages_follow_their_markers_to_the_end() {
        let all = keyed(&["a", "b", "c", "d", "e"]);
        let mut marker: Option<String> = None;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let paging = Paging::parse("ListFunctions", marker.as_deref(), Some("2"), 50).unwrap();
            let (page, next) = paging.take(all.clone());
            assert!(page.len() <= 2);
            seen.extend(page);
            pages += 1;
            match next {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
        assert_eq!(pages, 3);
    }

    #[test]
    fn a_full_last_page_has_no_next_marker() {
        let paging = Paging::parse("ListFunctions", None, Some("2"), 50).unwrap();
        assert_eq!(
            paging.take(keyed(&["a", "b"])),
            (keyed_items(&["a", "b"]), None)
        );
        let paging = Paging::parse("ListFunctions", None, None, 50).unwrap();
        assert_eq!(paging.take(keyed(&["a", "b", "c"])).1, None);
    }

    fn keyed_items(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_walk_survives_the_marked_entry_being_deleted() {
        let paging = Paging::parse("ListFunctions", None, Some("2"), 50).unwrap();
        let (_, next) = paging.take(keyed(&["a", "b", "c"]));
        let paging = Paging::parse("ListFunctions", next.as_deref(), Some("2"), 50).unwrap();
        assert_eq!(paging.take(keyed(&["a", "c"])).0, ["c"]);
    }

    #[test]
    fn bad_markers_and_sizes_are_refused_by_name() {
        for bad in ["not base64!", "%%%", "_w"] {
            let e = Paging::parse("ListFunctionUrlConfigs", Some(bad), None, 50).unwrap_err();
            assert!(
                matches!(&e, ApiError::InvalidParameterValue(m) if m.contains(bad)),
                "{bad}: {e:?}"
            );
        }
        for bad in ["0", "51", "-1", "x", ""] {
            let e = Paging::parse("ListFunctionUrlConfigs", None, Some(bad), 50).unwrap_err();
            assert!(
                matches!(&e, ApiError::InvalidParameterValue(m) if m.contains("MaxItems")),
                "{bad}: {e:?}"
            );
        }
        assert!(Paging::parse("ListFunctions", None, Some("10000"), 10_000).is_ok());
    }
}
