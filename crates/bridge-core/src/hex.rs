//! Lower-case hex, for fingerprints, hashes, signatures and key files, in every crate (too
//! small to be worth a dependency).

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The two lower-case hex digits of one byte, without allocating (for writers that escape a
/// byte at a time, such as canonical JSON's `\u00xx`).
pub fn encode_byte(b: u8) -> [u8; 2] {
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]]
}

/// Lower-case hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        let [high, low] = encode_byte(b);
        out.push(char::from(high));
        out.push(char::from(low));
    }
    out
}

/// The bytes of hex digits in either case; `None` for an odd length or a non-hex character.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(super::encode(&bytes), "0001abff");
        assert_eq!(super::decode("0001ABff").as_deref(), Some(&bytes[..]));
        assert_eq!(super::decode("abc"), None);
        assert_eq!(super::decode("zz"), None);
        assert_eq!(super::encode_byte(0x1f), *b"1f");
        assert_eq!(super::encode_byte(0xa0), *b"a0");
    }
}
