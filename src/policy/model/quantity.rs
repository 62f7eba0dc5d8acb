//! Kubernetes resource quantities (`1Gi`, `50G`, `1.5Ti`, `500M`, `1e9`, `100m`), parsed and
//! compared exactly as `k8s.io/apimachinery/pkg/api/resource.ParseQuantity` does: a value is
//! rounded up (away from zero) to nano precision, binary-suffixed values are capped at
//! 2^63-1, and two quantities compare by value whatever their form (`50G` < `50Gi`).
//!
//! No maintained crate parses the whole grammar exactly (decimal fractions, exponents, milli
//! and nano units), so this module does, in `i128` nano-units: exact for every value up to
//! about 1.7e29 (far beyond any volume size); larger values saturate and compare above every
//! limit a policy can declare (policy limits are refused when they saturate).

use std::cmp::Ordering;
use std::fmt;

/// A parsed quantity: its value in nano-units (`1` is `1_000_000_000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quantity {
    nanos: i128,
}

/// Why a string is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    #[error("quantity has more than 38 significant digits")]
    TooPrecise,
}

const NANOS: i128 = 1_000_000_000;
/// `maxAllowed` of apimachinery: binary-suffixed values are capped there.
const MAX_BINARY: i128 = i64::MAX as i128;

impl Quantity {
    /// The value in nano-units.
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// Whether the value is too large to be represented exactly (it compares above every
    /// representable value).
    pub fn is_saturated(self) -> bool {
        self.nanos == i128::MAX || self.nanos == -i128::MAX
    }

    /// Parses a quantity as `resource.ParseQuantity` does (no surrounding whitespace).
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        Quantity::parse_rounded(s, Round::Exact)
    }

    /// The quantity between two bounds: equal when it is exact; for a quantity of more than
    /// 38 significant digits (which the API server accepts) its digits cut to 38, rounded down
    /// and up. Every limit has at most 38 digits, so `high > limit` and `low < limit` compare
    /// such a quantity with a limit exactly.
    pub fn parse_bounds(s: &str) -> Result<(Quantity, Quantity), QuantityError> {
        match Quantity::parse(s) {
            Ok(q) => Ok((q, q)),
            Err(QuantityError::TooPrecise) => Ok((
                Quantity::parse_rounded(s, Round::Down)?,
                Quantity::parse_rounded(s, Round::Up)?,
            )),
            Err(e) => Err(e),
        }
    }

    fn parse_rounded(s: &str, round: Round) -> Result<Quantity, QuantityError> {
        let b = s.as_bytes();
        let mut i = 0;
        let negative = match b.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &s[int_start..i];
        let mut frac_part = "";
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let f = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &s[f..i];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(QuantityError::Format);
        }
        let (exp10, bin) = suffix(&s[i..]).ok_or(QuantityError::Format)?;
        // Away from zero: for a negative quantity the magnitude rounds the other way.
        let round = match (negative, round) {
            (true, Round::Down) => Round::Up,
            (true, Round::Up) => Round::Down,
            (_, r) => r,
        };
        let magnitude = magnitude(int_part, frac_part, exp10, bin, round)?;
        Ok(Quantity {
            nanos: if negative { -magnitude } else { magnitude },
        })
    }
}

/// The suffix's power of ten and power of two.
fn suffix(s: &str) -> Option<(i64, u32)> {
    Some(match s {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let rest = s.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            // Go reads the exponent as an int32.
            (i64::from(rest.parse::<i32>().ok()?), 0)
        }
    })
}

/// How digits past the 38th are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// Refused ([`QuantityError::TooPrecise`]).
    Exact,
    /// Cut off.
    Down,
    /// Cut off, and one added to the last digit kept.
    Up,
}

/// Significant digits read exactly.
const MAX_DIGITS: usize = 38;

/// The magnitude in nano-units, rounded up, binary values capped, huge values saturated.
fn magnitude(
    int_part: &str,
    frac_part: &str,
    exp10: i64,
    bin: u32,
    round: Round,
) -> Result<i128, QuantityError> {
    let digits: String = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    if trimmed.is_empty() {
        return Ok(0);
    }
    let cut = trimmed.len().saturating_sub(MAX_DIGITS);
    if cut > 0 && round == Round::Exact {
        return Err(QuantityError::TooPrecise);
    }
    // value = trimmed * 10^scale * 2^bin nano-units
    let scale = exp10 - frac_part.len() as i64 + 9 + (digits.len() - trimmed.len() + cut) as i64;
    let mantissa: i128 = trimmed[..trimmed.len() - cut]
        .parse()
        .map_err(|_| QuantityError::Format)?;
    let mantissa = mantissa + i128::from(cut > 0 && round == Round::Up);
    let Some(with_bin) = mantissa.checked_mul(1i128 << bin) else {
        return Ok(cap(i128::MAX, bin));
    };
    let value = if scale >= 0 {
        u32::try_from(scale)
            .ok()
            .and_then(|s| 10i128.checked_pow(s))
            .and_then(|p| with_bin.checked_mul(p))
            .unwrap_or(i128::MAX)
    } else {
        match u32::try_from(-scale)
            .ok()
            .and_then(|s| 10i128.checked_pow(s))
        {
            // Rounded up: a non-zero request never becomes zero.
            Some(p) => with_bin / p + i128::from(with_bin % p != 0),
            None => 1,
        }
    };
    Ok(cap(value, bin))
}

fn cap(value: i128, bin: u32) -> i128 {
    if bin > 0 && value > MAX_BINARY * NANOS {
        MAX_BINARY * NANOS
    } else {
        value
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

/// A quantity with the text it was written as: limits are compared by value and written back
/// in their own form (`50Gi`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub text: String,
    pub value: Quantity,
}

impl Written {
    pub fn parse(text: &str) -> Result<Written, QuantityError> {
        Ok(Written {
            text: text.to_owned(),
            value: Quantity::parse(text)?,
        })
    }
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A limit from the policy or an annotation: a positive quantity small enough to be exact.
pub fn limit(text: &str) -> Result<Written, String> {
    let w = Written::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    if w.value.nanos() <= 0 {
        return Err(format!("{text:?} must be positive"));
    }
    if w.value.is_saturated() {
        return Err(format!("{text:?} is too large"));
    }
    Ok(w)
}

/// Bytes of a quantity, rounded up as `Quantity.Value()` does (the PV controller compares
/// `capacity[storage]` with `requests[storage]` that way); `None` when the text is not a quantity,
/// is negative, or does not fit in an `i64` (Kubernetes caps such values; they are not judged).
pub fn bytes(text: &str) -> Option<u64> {
    let q = Quantity::parse(text).ok()?;
    let nanos = q.nanos();
    if nanos < 0 || q.is_saturated() {
        return None;
    }
    let whole = (nanos + 999_999_999) / 1_000_000_000;
    if whole >= i128::from(i64::MAX) {
        return None;
    }
    u64::try_from(whole).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> i128 {
        Quantity::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .nanos()
    }

    /// `decQuantity(i, exp)` of the upstream tests, in nano-units.
    fn dec(i: i128, exp: i32) -> i128 {
        let e = exp + 9;
        if e >= 0 {
            i * 10i128.pow(e as u32)
        } else {
            i / 10i128.pow((-e) as u32)
        }
    }

    /// The value table of apimachinery's `TestQuantityParse`, each also negated and with `+`.
    #[test]
    fn upstream_parse_table() {
        let gi = 1i128 << 30;
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("0n", 0),
            ("0u", 0),
            ("0m", 0),
            ("0Ki", 0),
            ("0k", 0),
            ("0Mi", 0),
            ("0M", 0),
            ("0Gi", 0),
            ("0G", 0),
            ("0Ti", 0),
            ("0T", 0),
            ("1", dec(1, 0)),
            ("1Ki", dec(1024, 0)),
            ("8Ki", dec(8 * 1024, 0)),
            ("7Mi", dec(7 * 1024 * 1024, 0)),
            ("6Gi", dec(6 * gi, 0)),
            ("5Ti", dec(5 << 40, 0)),
            ("4Pi", dec(4 << 50, 0)),
            ("3Ei", dec(3 << 60, 0)),
            ("10Ti", dec(10 << 40, 0)),
            ("100Ti", dec(100 << 40, 0)),
            ("5n", dec(5, -9)),
            ("4u", dec(4, -6)),
            ("3m", dec(3, -3)),
            ("9", dec(9, 0)),
            ("8k", dec(8, 3)),
            ("50k", dec(5, 4)),
            ("7M", dec(7, 6)),
            ("6G", dec(6, 9)),
            ("5T", dec(5, 12)),
            ("40T", dec(4, 13)),
            ("300T", dec(3, 14)),
            ("2P", dec(2, 15)),
            ("1E", dec(1, 18)),
            ("1E-3", dec(1, -3)),
            ("1e3", dec(1, 3)),
            ("1E6", dec(1, 6)),
            ("1e9", dec(1, 9)),
            ("1E12", dec(1, 12)),
            ("1e15", dec(1, 15)),
            ("1E18", dec(1, 18)),
            ("1e14", dec(1, 14)),
            ("1e13", dec(1, 13)),
            ("100.035k", dec(100035, 0)),
            ("0.001", dec(1, -3)),
            ("0.0005k", dec(5, -1)),
            ("0.005", dec(5, -3)),
            ("0.05", dec(5, -2)),
            ("0.5", dec(5, -1)),
            ("0.00050k", dec(5, -1)),
            ("0.00500", dec(5, -3)),
            ("0.05000", dec(5, -2)),
            ("0.50000", dec(5, -1)),
            ("0.5e0", dec(5, -1)),
            ("0.5e-1", dec(5, -2)),
            ("0.5e-2", dec(5, -3)),
            ("10.035M", dec(10035, 3)),
            ("1.2e3", dec(12, 2)),
            ("1.3E+6", dec(13, 5)),
            ("1.40e9", dec(14, 8)),
            ("1.53E12", dec(153, 10)),
            ("1.6e15", dec(16, 14)),
            ("1.7E18", dec(17, 17)),
            ("9.01", dec(901, -2)),
            ("8.1k", dec(81, 2)),
            ("7.123456M", dec(7123456, 0)),
            ("6.987654321G", dec(6987654321, 0)),
            ("5.444T", dec(5444, 9)),
            ("40.1T", dec(401, 11)),
            ("300.2T", dec(3002, 11)),
            ("2.5P", dec(25, 14)),
            ("1.01E", dec(101, 16)),
            // Things that saturate or round.
            ("3.001n", dec(4, -9)),
            ("1.1E-9", dec(2, -9)),
            ("0.0000000001", dec(1, -9)),
            ("0.0000000005", dec(1, -9)),
            ("0.00000000050", dec(1, -9)),
            ("0.5e-9", dec(1, -9)),
            ("0.9n", dec(1, -9)),
            ("0.00000012345", dec(124, -9)),
            ("0.00000012354", dec(124, -9)),
            ("9Ei", MAX_BINARY * NANOS),
            ("9223372036854775807Ki", MAX_BINARY * NANOS),
            ("12E", dec(12, 18)),
            // Fractional binary values.
            ("100.035Ki", 10243584 * NANOS / 100),
            ("0.5Mi", dec(512 * 1024, 0)),
            ("0.05Gi", 536870912 * NANOS / 10),
            ("0.025Ti", 274877906944 * NANOS / 10),
            // Things written by trolls.
            ("0.000000000001Ki", dec(2, -9)),
            (".001", dec(1, -3)),
            (".0001k", dec(100, -3)),
            ("1.", dec(1, 0)),
            ("1.G", dec(1, 9)),
        ];
        for (s, want) in cases {
            assert_eq!(q(s), *want, "{s}");
            assert_eq!(q(&format!("-{s}")), -*want, "-{s}");
            assert_eq!(q(&format!("+{s}")), *want, "+{s}");
        }
    }

    #[test]
    fn refuses_what_upstream_refuses() {
        for s in [
            "", "1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01e-", " 1", "1 ",
            "1Gb", "1gi", "e3", "1e", "1e+", "1e3.5",
        ] {
            assert!(Quantity::parse(s).is_err(), "{s:?} parsed");
        }
    }

    /// `TestQuantityCmp` and the comparisons storage limits depend on.
    #[test]
    fn compares_by_value_whatever_the_form() {
        let lt = |a: &str, b: &str| Quantity::parse(a).unwrap() < Quantity::parse(b).unwrap();
        let eq = |a: &str, b: &str| Quantity::parse(a).unwrap() == Quantity::parse(b).unwrap();
        assert!(eq("0", "0"));
        assert!(lt("50m", "100m"));
        assert!(lt("100Gi", "10000T"));
        assert!(lt("50G", "50Gi"));
        assert!(eq("53687091200", "50Gi"));
        assert!(lt("53687091199", "50Gi"));
        assert!(eq("1.5Ti", "1536Gi"));
        assert!(lt("500M", "1Gi") && lt("500Mi", "1Gi"));
        assert!(eq("1e9", "1G") && lt("1e9", "1Gi"));
        assert!(eq("4Gi", "4096Mi") && lt("4095Mi", "4Gi"));
        assert!(eq("1000m", "1") && lt("999m", "1"));
        assert!(lt("16Ti", "16.000000001Ti") && eq("16Ti", "17592186044416"));
        assert!(lt("-1Gi", "0"));
    }

    #[test]
    fn huge_values_saturate_above_every_limit() {
        let huge = Quantity::parse("1e100").unwrap();
        assert!(huge.is_saturated());
        assert!(huge > Quantity::parse("9E").unwrap());
        assert!(!Quantity::parse("16Ti").unwrap().is_saturated());
        assert_eq!(q("1e-100"), 1, "never rounds to zero");
        assert_eq!(
            Quantity::parse("1234567890123456789012345678901234567891"),
            Err(QuantityError::TooPrecise)
        );
    }

    #[test]
    fn written_keeps_its_form() {
        let w = Written::parse("50Gi").unwrap();
        assert_eq!(w.to_string(), "50Gi");
        assert_eq!(w.value.nanos(), 50 * (1i128 << 30) * NANOS);
    }
}

#[cfg(test)]
mod bytes_tests {
    use super::bytes as parse;

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

    #[test]
    fn bounds_of_a_quantity_past_38_digits_enclose_it_and_are_equal_otherwise() {
        use super::Quantity;
        let q = Quantity::parse("1Gi").unwrap();
        assert_eq!(Quantity::parse_bounds("1Gi").unwrap(), (q, q));
        // 39 digits of nano-units: the last one cut, down and up.
        let long = format!("1{}n", "2".repeat(38));
        let (low, high) = Quantity::parse_bounds(&long).unwrap();
        assert_eq!(high.nanos() - low.nanos(), 10);
        assert_eq!(
            low.nanos(),
            format!("1{}0", "2".repeat(37)).parse::<i128>().unwrap()
        );
        let (nlow, nhigh) = Quantity::parse_bounds(&format!("-{long}")).unwrap();
        assert_eq!((nlow.nanos(), nhigh.nanos()), (-high.nanos(), -low.nanos()));
        assert!(Quantity::parse_bounds("1 Gi").is_err());
    }
}
