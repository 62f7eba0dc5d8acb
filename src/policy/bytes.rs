//! Storage sizes as Kubernetes compares them: a `resource.Quantity` (`5Gi`, `500M`, `1.5e3`)
//! read exactly and rounded up to whole bytes, as `Quantity.Value()` does (the PV controller
//! compares `capacity[storage]` with `requests[storage]` that way).
//!
//! Private to the volume rules for now (an exact quantity parser for `resource.Quantity` as a
//! whole is being written elsewhere; this one only needs byte counts and may be merged into it).

/// Bytes of a quantity, rounded up like `Quantity.Value()`; `None` when the text is not a
/// quantity or does not fit in an `i64` (Kubernetes caps such values; we do not judge them).
pub fn parse(text: &str) -> Option<u64> {
    let s = text.trim();
    let (sign, s) = match s.as_bytes().first()? {
        b'-' => (-1, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    // Number: digits, optional fraction; then a suffix (binary, decimal or an exponent).
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(num_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return None;
    }
    let (pow10, pow2): (i32, u32) = match suffix {
        "" => (0, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            (exp, 0)
        }
        _ => return None,
    };
    // mantissa * 10^(pow10 - frac digits) * 2^pow2, exactly, then rounded up.
    let digits: String = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    if sign < 0 && mantissa != 0 {
        return None;
    }
    let exp10 = pow10 - frac_part.len() as i32;
    let mut value = mantissa.checked_mul(1u128.checked_shl(pow2)?)?;
    if exp10 >= 0 {
        value = value.checked_mul(10u128.checked_pow(exp10 as u32)?)?;
    } else {
        let div = 10u128.checked_pow(exp10.unsigned_abs())?;
        value = value.div_ceil(div);
    }
    u64::try_from(value).ok().filter(|v| *v <= i64::MAX as u64)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_binary_and_decimal_suffixes() {
        assert_eq!(parse("5Gi"), Some(5 << 30));
        assert_eq!(parse("1Ki"), Some(1024));
        assert_eq!(parse("1Ei"), Some(1 << 60));
        assert_eq!(parse("500M"), Some(500_000_000));
        assert_eq!(parse("1k"), Some(1000));
        assert_eq!(parse("2T"), Some(2_000_000_000_000));
        assert_eq!(parse("1E"), Some(1_000_000_000_000_000_000));
        assert_eq!(parse("42"), Some(42));
        assert_eq!(parse("0"), Some(0));
    }

    #[test]
    fn fractions_and_exponents_are_exact_then_rounded_up() {
        assert_eq!(parse("1.5Gi"), Some(3 << 29));
        assert_eq!(parse("0.5Ki"), Some(512));
        assert_eq!(parse("1.5"), Some(2), "Value() rounds up");
        assert_eq!(parse("1500m"), Some(2));
        assert_eq!(parse("1000m"), Some(1));
        assert_eq!(parse("1n"), Some(1));
        assert_eq!(parse("1e3"), Some(1000));
        assert_eq!(parse("1E3"), Some(1000));
        assert_eq!(parse("12e-1"), Some(2));
        assert_eq!(parse(".5k"), Some(500));
        assert_eq!(parse("+1Mi"), Some(1 << 20));
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        for bad in [
            "", "Gi", "5GB", "5 Gi", "1.2.3", "abc", "-1Gi", "9Ei", "1e", "1e+", "5gi", ".",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse("-0"), Some(0));
        assert_eq!(parse("7Ei"), Some(7 << 60));
    }
}
