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

/// Formats a duration in the largest unit that divides it exactly (`90s`, `5m`, `2h`,
/// `1500ms`), the form [`parse`] reads back.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    const UNITS: [(u128, &str); 6] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    if ns == 0 {
        return String::from("0s");
    }
    UNITS.iter().find(|(size, _)| ns % size == 0).map_or_else(
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
        for text in ["0s", "90s", "5m", "2h", "3d", "1500ms", "250us", "7ns"] {
            let d = parse(text).unwrap();
            assert_eq!(format(d), text);
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
