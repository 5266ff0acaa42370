//! Quoting a value interpolated into a `sh -c` lifecycle script, so that no value (a
//! deployment's configuration, a path under the host's root) can add shell syntax.
//!
//! The nucleus pastes values in as they are, so `{configuration:/name}` set to `x; reboot`
//! runs `reboot`. Lambkin reads the script up to the reference the way `sh` would (outside
//! quotes, in single quotes, in double quotes, in a here-document's body, inside `$(…)` and
//! backquotes) and encodes the value for that place. A value made only of characters no shell
//! treats specially (letters, digits, `_@%+=:,./-`) is pasted unchanged anywhere, so paths and
//! plain settings read exactly as with the nucleus; anything else becomes one word of literal
//! text: `'…'` outside quotes, `'\''` for a quote within single quotes, a backslash before
//! `\ " $ \`` within double quotes or an expanding here-document.

/// Where in a script a reference stands, as `sh` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// Outside any quotes: the value becomes one single-quoted word.
    Bare,
    /// Within `'…'`.
    Single,
    /// Within `"…"`.
    Double,
    /// In the body of a here-document: `$` and `` ` `` expand there unless its delimiter was
    /// quoted; a line equal to the delimiter ends it.
    Heredoc {
        delimiter: String,
        strip_tabs: bool,
        expanding: bool,
    },
}

/// A place, and how many `` `…` `` command substitutions it is nested in: the shell takes a
/// backslash off `\\`, `` \` `` and `\$` there before it reads the text inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spot {
    pub place: Place,
    pub backquotes: usize,
}

/// True when `value` means the same text in every place, so it is pasted as it is.
fn is_plain(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b))
}

/// `value` encoded for `spot`; `None` when it cannot be written there as text (a line of it
/// would end the quoted here-document it stands in).
pub(crate) fn quote(value: &str, spot: &Spot) -> Option<String> {
    if is_plain(value) {
        return Some(value.to_owned());
    }
    let mut quoted = quote_in(value, &spot.place)?;
    for _ in 0..spot.backquotes {
        let mut out = String::with_capacity(quoted.len() + 8);
        for c in quoted.chars() {
            if matches!(c, '\\' | '`' | '$') {
                out.push('\\');
            }
            out.push(c);
        }
        quoted = out;
    }
    Some(quoted)
}

fn quote_in(value: &str, place: &Place) -> Option<String> {
    // In double quotes `\` escapes `"` too; in a here-document it does not, and is kept.
    let escaped = |value: &str, quote: bool| {
        let mut out = String::with_capacity(value.len() + 8);
        for c in value.chars() {
            if matches!(c, '\\' | '$' | '`') || (quote && c == '"') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    Some(match place {
        Place::Bare => format!("'{}'", value.replace('\'', r"'\''")),
        Place::Single => value.replace('\'', r"'\''"),
        Place::Double => escaped(value, true),
        Place::Heredoc {
            delimiter,
            strip_tabs,
            expanding,
        } => {
            let ends = |line: &str| {
                let line = if *strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                line == delimiter
            };
            let lines: Vec<&str> = value.split('\n').collect();
            // The first line continues the script's own line, so only later ones can end it.
            let ending = lines.iter().skip(1).any(|l| ends(l));
            match (expanding, ending) {
                (false, true) => return None,
                (false, false) => value.to_owned(),
                (true, _) => lines
                    .iter()
                    .enumerate()
                    .map(|(n, line)| {
                        // An empty command substitution keeps the line's text and stops it
                        // from reading as the delimiter.
                        if n > 0 && ends(line) {
                            format!("$(:){}", escaped(line, false))
                        } else {
                            escaped(line, false)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        }
    })
}

/// One level of nesting while reading a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// Outside quotes; `parens` counts `(` opened at this level (a `$(…)` ends at the `)`
    /// that brings it below zero).
    Bare {
        parens: u32,
    },
    Single,
    Double,
    /// Inside `` `…` ``: read as bare text until the closing backquote.
    Backquote,
}

/// A here-document announced on the current line, whose body starts on the next one.
struct Pending {
    delimiter: String,
    strip_tabs: bool,
    quoted: bool,
}

/// Where the byte offset `at` of `script` stands (`at` is on a char boundary).
#[cfg(test)]
pub(crate) fn place_at(script: &str, at: usize) -> Spot {
    places(script, &[at]).pop().unwrap_or(Spot {
        place: Place::Bare,
        backquotes: 0,
    })
}

/// Where each of the byte offsets `at` (ascending, on char boundaries) of `script` stands, in
/// one reading of the script.
pub(crate) fn places(script: &str, at: &[usize]) -> Vec<Spot> {
    let bytes = script.as_bytes();
    let mut found = Vec::with_capacity(at.len());
    let mut stack = vec![Frame::Bare { parens: 0 }];
    let mut pending: Vec<Pending> = Vec::new();
    // Inside a comment or a `<<` operator's own text: bare, whatever it holds.
    let mut bare_until = 0;
    let mut i = 0;
    while found.len() < at.len() {
        let next = at[found.len()];
        let backquotes = stack.iter().filter(|f| **f == Frame::Backquote).count();
        if i >= next || i >= bytes.len() {
            let place = if next < bare_until {
                Place::Bare
            } else {
                match stack.last() {
                    Some(Frame::Single) => Place::Single,
                    Some(Frame::Double) => Place::Double,
                    _ => Place::Bare,
                }
            };
            found.push(Spot { place, backquotes });
            continue;
        }
        let b = bytes[i];
        let top = stack.last().copied().unwrap_or(Frame::Bare { parens: 0 });
        if b == b'\n' && !pending.is_empty() {
            // Here-document bodies follow this line, one after the other.
            i += 1;
            for doc in std::mem::take(&mut pending) {
                loop {
                    let end = script[i..].find('\n').map_or(script.len(), |n| i + n);
                    while let Some(&offset) = at.get(found.len()) {
                        if offset < i || offset > end {
                            break;
                        }
                        found.push(Spot {
                            place: Place::Heredoc {
                                delimiter: doc.delimiter.clone(),
                                strip_tabs: doc.strip_tabs,
                                expanding: !doc.quoted,
                            },
                            backquotes,
                        });
                    }
                    let line = &script[i..end];
                    let line = if doc.strip_tabs {
                        line.trim_start_matches('\t')
                    } else {
                        line
                    };
                    i = (end + 1).min(script.len());
                    if line == doc.delimiter || end == script.len() {
                        break;
                    }
                }
            }
            continue;
        }
        match top {
            Frame::Single => {
                if b == b'\'' {
                    stack.pop();
                }
            }
            Frame::Double => match b {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                b'`' => stack.push(Frame::Backquote),
                b'$' if bytes.get(i + 1) == Some(&b'(') => {
                    stack.push(Frame::Bare { parens: 0 });
                    i += 1;
                }
                _ => {}
            },
            Frame::Bare { .. } | Frame::Backquote => match b {
                b'\\' => i += 1,
                b'\'' => stack.push(Frame::Single),
                b'"' => stack.push(Frame::Double),
                b'`' if top == Frame::Backquote => {
                    stack.pop();
                }
                b'`' => stack.push(Frame::Backquote),
                b'$' if bytes.get(i + 1) == Some(&b'(') => {
                    stack.push(Frame::Bare { parens: 0 });
                    i += 1;
                }
                b'(' => {
                    if let Some(Frame::Bare { parens }) = stack.last_mut() {
                        *parens += 1;
                    }
                }
                b')' => {
                    let nested = stack.len() > 1;
                    match stack.last_mut() {
                        Some(Frame::Bare { parens }) if *parens > 0 => *parens -= 1,
                        _ if nested => {
                            stack.pop();
                        }
                        _ => {}
                    }
                }
                b'#' if i == 0
                    || bytes[i - 1].is_ascii_whitespace()
                    || b";&|(".contains(&bytes[i - 1]) =>
                {
                    // A comment runs to the end of the line.
                    let end = script[i..].find('\n').map_or(script.len(), |n| i + n);
                    bare_until = end;
                    i = end;
                    continue;
                }
                b'<' if bytes.get(i + 1) == Some(&b'<') && bytes.get(i + 2) != Some(&b'<') => {
                    let (doc, after) = heredoc_operator(script, i + 2);
                    if let Some(doc) = doc {
                        pending.push(doc);
                    }
                    bare_until = after;
                    i = after;
                    continue;
                }
                _ => {}
            },
        }
        i += 1;
    }
    found
}

/// Reads the rest of a `<<` operator from `from` (just past `<<`): its delimiter word and
/// where reading goes on.
fn heredoc_operator(script: &str, from: usize) -> (Option<Pending>, usize) {
    let bytes = script.as_bytes();
    let mut i = from;
    let strip_tabs = bytes.get(i) == Some(&b'-');
    if strip_tabs {
        i += 1;
    }
    while matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let mut delimiter = String::new();
    let mut quoted = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\'' | b'"' => {
                quoted = true;
                let close = script[i + 1..]
                    .find(b as char)
                    .map_or(script.len(), |n| i + 1 + n);
                delimiter.push_str(&script[i + 1..close]);
                i = (close + 1).min(script.len());
            }
            b'\\' => {
                quoted = true;
                i += 1;
            }
            b if b.is_ascii_whitespace() || b";&|<>()".contains(&b) => break,
            _ => {
                let len = script[i..].chars().next().map_or(1, char::len_utf8);
                delimiter.push_str(&script[i..i + len]);
                i += len;
            }
        }
    }
    if delimiter.is_empty() {
        return (None, i);
    }
    (
        Some(Pending {
            delimiter,
            strip_tabs,
            quoted,
        }),
        i,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The script with `@` replaced by `value` quoted for its place.
    fn fill(script: &str, value: &str) -> String {
        let at = script.find('@').unwrap();
        let place = place_at(script, at);
        let value = quote(value, &place).unwrap();
        format!("{}{}{}", &script[..at], value, &script[at + 1..])
    }

    fn sh(script: &str) -> String {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    const HOSTILE: &[&str] = &[
        "x; echo INJECTED",
        "$(echo INJECTED)",
        "`echo INJECTED`",
        "a'b\"c\\d$HOME",
        "' ; echo INJECTED ; '",
        "\" ; echo INJECTED ; \"",
        "line1\nline2",
        "",
        "  spaced  out  ",
        "*",
        "{\"a\":[1,\"2\"]}",
        "EOF\necho INJECTED",
    ];

    /// Every hostile value arrives as exactly its own text, in every place a script may put it.
    #[test]
    fn a_value_is_literal_text_wherever_it_stands() {
        // A script, and what it prints with `@` standing for the value.
        let places = [
            ("printf '%s' @", "@"),
            ("printf '%s' '@'", "@"),
            ("printf '%s' \"@\"", "@"),
            ("printf '%s' \"pre-@-post\"", "pre-@-post"),
            ("printf '%s' x@y", "x@y"),
            ("printf '%s' \"$(printf '%s' @)\"", "@"),
            ("printf '%s' \"$(printf '%s' \"@\")\"", "@"),
            ("x=`printf '%s' @`; printf '%s' \"$x\"", "@"),
            ("# don't be fooled\nprintf '%s' @", "@"),
            ("if true; then (printf '%s' @); fi", "@"),
        ];
        for (script, prints) in places {
            for value in HOSTILE {
                let filled = fill(script, value);
                let got = sh(&filled);
                // Command substitution drops trailing newlines; nothing else may differ.
                let value = if script.contains('`') || script.contains("$(") {
                    value.trim_end_matches('\n')
                } else {
                    value
                };
                let want = prints.replace('@', value);
                assert_eq!(got, want, "script {script:?} value {value:?} -> {filled:?}");
            }
        }
    }

    #[test]
    fn here_documents_keep_the_value_as_text() {
        for value in HOSTILE {
            let expanding = fill("cat <<EOF\n[@]\nEOF\n", value);
            assert_eq!(sh(&expanding), format!("[{value}]\n"), "{expanding:?}");
            let script = "cat <<'EOF'\n[@]\nEOF\n";
            let place = place_at(script, script.find('@').unwrap());
            match quote(value, &place) {
                Some(_) => {
                    let literal = fill(script, value);
                    assert_eq!(sh(&literal), format!("[{value}]\n"), "{literal:?}");
                }
                // Nothing can stop a line of it from ending a quoted here-document.
                None => assert!(value.contains("\nEOF")),
            }
        }
        assert_eq!(
            place_at("cat <<-END\n\tx @\n\tEND\n", 14).place,
            Place::Heredoc {
                delimiter: "END".into(),
                strip_tabs: true,
                expanding: true
            }
        );
        assert_eq!(place_at("cat <<\"E\" ; echo @", 17).place, Place::Bare);
    }

    #[test]
    fn plain_values_are_pasted_as_they_are() {
        for value in [
            "/gg/packages/artifacts/me/1.0.0",
            "8080",
            "a=b,c:d",
            "x@y%z+1",
        ] {
            for place in [Place::Bare, Place::Single, Place::Double] {
                for backquotes in [0, 1] {
                    let spot = Spot {
                        place: place.clone(),
                        backquotes,
                    };
                    assert_eq!(quote(value, &spot).as_deref(), Some(value));
                }
            }
        }
        let bare = Spot {
            place: Place::Bare,
            backquotes: 0,
        };
        assert_eq!(quote("", &bare).as_deref(), Some("''"));
        assert_eq!(quote("a b", &bare).as_deref(), Some("'a b'"));
    }
}
