//! Human durations such as `30m`, `1h`, `2h30m`, `1d12h` or `0s`.
//!
//! Rollouts are configured in HCL where `soak = "2h30m"` reads better than a
//! number of seconds, and Terraform users know the Go-style notation from
//! other providers. The grammar is deliberately small: whole numbers
//! followed by a unit (`d`, `h`, `m`, `s`), units in descending order and
//! each at most once. No fractions and no `ms`: rollout timings are coarse,
//! and a single canonical spelling per value keeps plans free of spurious
//! diffs ([`format`] produces it).

use super::FieldError;

/// Seconds in each unit, largest first (the order components must follow).
const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parses `value` into seconds. `field` names the input in errors.
pub fn parse(field: &str, value: &str) -> Result<u64, FieldError> {
    let err = |msg: String| {
        FieldError::new(
            field,
            format!(
                "invalid duration {value:?}: {msg} (examples: \"30m\", \"1h\", \"2h30m\", \"0s\")"
            ),
        )
    };
    if value.is_empty() {
        return Err(err("empty".into()));
    }
    let mut total: u64 = 0;
    let mut next_unit = 0; // index into UNITS of the largest unit still allowed
    let mut chars = value.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if !c.is_ascii_digit() {
            return Err(err(format!(
                "expected a number at position {}, found {c:?}",
                start + 1
            )));
        }
        let mut end = start;
        while let Some(&(i, d)) = chars.peek() {
            if d.is_ascii_digit() {
                end = i + 1;
                chars.next();
            } else {
                break;
            }
        }
        let amount: u64 = value[start..end]
            .parse()
            .map_err(|_| err("number too large".into()))?;
        let Some((_, unit)) = chars.next() else {
            return Err(err(format!(
                "missing unit after {amount} (use d, h, m or s)"
            )));
        };
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(err(format!("unknown unit {unit:?} (use d, h, m or s)")));
        };
        if pos < next_unit {
            return Err(err(format!(
                "unit {unit:?} repeated or out of order (write larger units first, each once)"
            )));
        }
        next_unit = pos + 1;
        total = amount
            .checked_mul(UNITS[pos].1)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| err("too large".into()))?;
    }
    Ok(total)
}

/// Parses and checks `min <= value <= max` (both in seconds).
pub fn parse_bounded(field: &str, value: &str, min: u64, max: u64) -> Result<u64, FieldError> {
    let secs = parse(field, value)?;
    if secs < min {
        return Err(FieldError::new(
            field,
            format!("must be at least {}, got {value:?}", format(min)),
        ));
    }
    if secs > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {}, got {value:?}", format(max)),
        ));
    }
    Ok(secs)
}

/// Canonical spelling of a number of seconds: `0s`, `90s` → `1m30s`,
/// `9000` → `2h30m`, `86400` → `1d`. `parse(format(n)) == n` for every `n`.
pub fn format(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut rest = secs;
    let mut out = String::new();
    for (unit, size) in UNITS {
        let n = rest / size;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push(unit);
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_examples() {
        assert_eq!(parse("soak", "30m"), Ok(1800));
        assert_eq!(parse("soak", "1h"), Ok(3600));
        assert_eq!(parse("soak", "2h30m"), Ok(9000));
        assert_eq!(parse("soak", "0s"), Ok(0));
        assert_eq!(parse("soak", "1d12h"), Ok(129_600));
        assert_eq!(parse("soak", "1h0m5s"), Ok(3605));
        assert_eq!(parse("soak", "90s"), Ok(90));
    }

    #[test]
    fn rejects_malformed() {
        let msg = |v: &str| parse("phase[0].soak", v).unwrap_err().to_string();
        assert!(msg("").contains("invalid duration \"\": empty"));
        assert!(msg("30").contains("missing unit after 30"));
        assert!(msg("5x").contains("unknown unit 'x'"));
        assert!(msg("30m1h").contains("unit 'h' repeated or out of order"));
        assert!(msg("1h1h").contains("repeated or out of order"));
        assert!(msg("h").contains("expected a number at position 1, found 'h'"));
        assert!(msg("1h 5m").contains("expected a number at position 3"));
        assert!(msg("-5m").contains("expected a number"));
        assert!(msg("1.5h").contains("unknown unit '.'"));
        assert!(msg("99999999999999999999d").contains("number too large"));
        assert!(msg("999999999999999d").contains("too large"));
        assert!(msg("x").starts_with("phase[0].soak: "));
    }

    #[test]
    fn bounds() {
        assert_eq!(parse_bounded("t", "5m", 60, 3600), Ok(300));
        assert_eq!(
            parse_bounded("t", "0s", 1, 3600).unwrap_err().message,
            "must be at least 1s, got \"0s\""
        );
        assert_eq!(
            parse_bounded("t", "2h", 1, 3600).unwrap_err().message,
            "must be at most 1h, got \"2h\""
        );
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(format(0), "0s");
        assert_eq!(format(90), "1m30s");
        assert_eq!(format(9000), "2h30m");
        assert_eq!(format(86_400), "1d");
        assert_eq!(format(90_061), "1d1h1m1s");
    }

    proptest! {
        #[test]
        fn format_round_trips(secs in 0u64..10_000_000_000) {
            prop_assert_eq!(parse("d", &format(secs)), Ok(secs));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = parse("d", &s);
        }
    }
}
