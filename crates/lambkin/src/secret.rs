//! Secrets: every key, token and session the host makes comes from here, from the operating
//! system's random source (`getrandom(2)`), in a uniform alphabet.
//!
//! The host checks the source once as it starts ([`check`]) and refuses to start without it;
//! after that a failure cannot be answered with a weaker secret, so it stops the host, as the
//! standard library's own hash maps do.

use std::fmt::Write as _;

/// Whether the operating system's random source answers.
pub fn check() -> Result<(), getrandom::Error> {
    getrandom::fill(&mut [0u8; 16])
}

/// Fills `buf` with random bytes from the operating system.
pub fn fill(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        // `check` passed at start: the source went away under a running host.
        panic!("the operating system's random source failed: {e}");
    }
}

/// `n` random bytes.
pub fn bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    fill(&mut out);
    out
}

/// `n` random bytes as `2n` lower-case hex digits.
pub fn hex(n: usize) -> String {
    bytes(n)
        .iter()
        .fold(String::with_capacity(2 * n), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `len` symbols of `alphabet` (2 to 256 symbols), each uniformly random: bytes that would
/// favour the first symbols are drawn again.
pub fn from_alphabet(alphabet: &[u8], len: usize) -> String {
    let size = alphabet.len().clamp(1, 256);
    // The largest multiple of the alphabet's size that fits in a byte's 256 values.
    let limit = 256 - 256 % size;
    let mut out = String::with_capacity(len);
    let mut pool = [0u8; 64];
    while out.len() < len {
        fill(&mut pool);
        for b in pool {
            let b = usize::from(b);
            if b < limit && out.len() < len {
                out.push(char::from(alphabet[b % size]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_their_shape_and_differ() {
        assert!(check().is_ok());
        let h = hex(32);
        assert_eq!(h.len(), 64);
        assert!(h
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(hex(32), h);
        let t = from_alphabet(b"ABC", 40);
        assert_eq!(t.len(), 40);
        assert!(t.bytes().all(|c| b"ABC".contains(&c)));
        assert_eq!(bytes(30).len(), 30);
    }

    #[test]
    fn every_symbol_is_as_likely_as_another() {
        // 62 symbols: a plain `b % 62` would draw the first 8 a quarter more often than the
        // rest (5 byte values each against 4). Over 620,000 symbols each is expected 10,000
        // times, with a standard deviation near 100; the first 8 would be near 12,000.
        let symbols: Vec<u8> = (0u8..62).collect();
        let drawn = from_alphabet(
            &symbols.iter().map(|i| b'0' + i).collect::<Vec<u8>>(),
            620_000,
        );
        let mut counts = [0u32; 62];
        for c in drawn.bytes() {
            counts[usize::from(c - b'0')] += 1;
        }
        let first: u32 = counts[..8].iter().sum::<u32>() / 8;
        let rest: u32 = counts[8..].iter().sum::<u32>() / 54;
        assert!(
            first.abs_diff(rest) < 600,
            "first 8 symbols {first} times each, the others {rest}"
        );
    }
}
