//! Memory sizes written as Kubernetes quantities (`128Mi`, `1Gi`, `500M`,
//! `1048576`), so a policy's memory limit reads like a container's.

/// Binary and decimal suffixes, as in Kubernetes (exponent forms such as
/// `1e9` and the milli suffix `m` make no sense for bytes and are not read).
const SUFFIXES: [(&str, u128); 8] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
];

/// The number of bytes `text` stands for, rounded up to a whole byte
/// (`1.5Ki` is 1536); `None` if it is not a quantity.
pub(super) fn parse(text: &str) -> Option<u128> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier = match suffix {
        "" => 1,
        _ => SUFFIXES.iter().find(|(name, _)| *name == suffix)?.1,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 18 {
        return None;
    }
    let digits = |text: &str| -> Option<u128> {
        if text.is_empty() {
            Some(0)
        } else if text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().ok()
        } else {
            None
        }
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction = digits(fraction)?.checked_mul(multiplier)?.div_ceil(scale);
    digits(whole)?.checked_mul(multiplier)?.checked_add(fraction)
}

/// Bytes in the largest binary unit that divides them: `128Mi`, `1536Ki`, `100`.
pub(super) fn format(bytes: usize) -> String {
    for (suffix, unit) in [("Ti", 1usize << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_decimal_and_plain() {
        assert_eq!(parse("128Mi"), Some(128 << 20));
        assert_eq!(parse("1Gi"), Some(1 << 30));
        assert_eq!(parse("64Ki"), Some(64 << 10));
        assert_eq!(parse("500M"), Some(500_000_000));
        assert_eq!(parse("2k"), Some(2_000));
        assert_eq!(parse("3G"), Some(3_000_000_000));
        assert_eq!(parse("1048576"), Some(1 << 20));
        assert_eq!(parse("1.5Ki"), Some(1536));
        assert_eq!(parse("0.5"), Some(1), "rounded up to a whole byte");
        assert_eq!(parse(".5Mi"), Some(512 << 10));
    }

    #[test]
    fn not_quantities() {
        for text in [
            "",
            "Mi",
            "12Qi",
            "12mi",
            "12 Mi",
            "-1Mi",
            "1.2.3",
            ".",
            "1e9",
            "12MiB",
            "99999999999999999999999999999999999999999Ti",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        assert_eq!(format(128 << 20), "128Mi");
        assert_eq!(format(1536 << 10), "1536Ki");
        assert_eq!(format(4 << 30), "4Gi");
        assert_eq!(format(100), "100");
        assert_eq!(format(0), "0");
    }
}
