//! Durations written as text in configuration and on the command line: `500ms`, `30s`,
//! `5m`, `1h30m`, `2d`. One parser and one formatter for every crate.

use std::time::Duration;

/// Parses one or more `<integer><unit>` parts (units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`,
/// `d`), such as `1h30m`, or a bare `0`. A number without a unit is refused rather than
/// guessed.
///
/// # Errors
/// When the text is empty, has an unknown unit or a number without a unit, or overflows.
pub fn parse(text: &str) -> Result<Duration, String> {
    let err = || {
        format!("invalid duration `{text}`, expected for example `500ms`, `30s`, `5m` or `1h30m`")
    };
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (number, after) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| err())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let part = match unit {
            "ns" => Some(Duration::from_nanos(n)),
            "us" | "µs" => Some(Duration::from_micros(n)),
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "d" => n.checked_mul(86_400).map(Duration::from_secs),
            _ => None,
        };
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(err)?;
        rest = next;
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it back: whole seconds as compound parts
/// (`90s` is `1m30s`, `5400s` is `1h30m`, `86400s` is `1d`), anything finer in the
/// largest single unit that divides it exactly (`1500ms`, `250us`).
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        return String::from("0s");
    }
    if d.subsec_nanos() == 0 {
        let mut rest = d.as_secs();
        let mut out = String::new();
        for (size, unit) in [(86_400u64, "d"), (3600, "h"), (60, "m"), (1, "s")] {
            if rest >= size {
                out.push_str(&format!("{}{unit}", rest / size));
                rest %= size;
            }
        }
        return out;
    }
    let ns = d.as_nanos();
    [(1_000_000u128, "ms"), (1_000, "us")]
        .iter()
        .find(|(size, _)| ns.is_multiple_of(*size))
        .map_or_else(
            || format!("{ns}ns"),
            |(size, unit)| format!("{}{unit}", ns / size),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_compounds() {
        let cases = [
            ("0", Duration::ZERO),
            ("250us", Duration::from_micros(250)),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("2d", Duration::from_secs(172_800)),
            (" 15m ", Duration::from_secs(900)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "",
            "15",
            "m",
            "5 m",
            "5x",
            "1h30",
            "-5s",
            "99999999999999999999s",
            "5.5s",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in [
            "0s", "1m30s", "5m", "2h", "1h30m", "3d", "1d2h3m4s", "1500ms", "250us", "7ns",
        ] {
            let d = parse(text).unwrap();
            assert_eq!(format(d), text);
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
