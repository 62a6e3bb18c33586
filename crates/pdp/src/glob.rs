//! Glob patterns (`*` for any run of characters, `?` for one) compiled once at load.

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Glob {
    /// `*`: anything.
    Any,
    /// No wildcard: exact equality.
    Exact(String),
    /// `prefix*`.
    Prefix(String),
    /// `*suffix`.
    Suffix(String),
    /// Anything else with wildcards.
    General(Vec<char>),
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Glob {
        let stars = pattern.matches('*').count();
        let has_q = pattern.contains('?');
        if pattern == "*" {
            Glob::Any
        } else if stars == 0 && !has_q {
            Glob::Exact(pattern.to_owned())
        } else if stars == 1 && !has_q && pattern.ends_with('*') {
            Glob::Prefix(pattern.trim_end_matches('*').to_owned())
        } else if stars == 1 && !has_q && pattern.starts_with('*') {
            Glob::Suffix(pattern.trim_start_matches('*').to_owned())
        } else {
            Glob::General(pattern.chars().collect())
        }
    }

    /// Whether the pattern has no wildcard.
    pub(crate) fn exact(&self) -> Option<&str> {
        match self {
            Glob::Exact(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(s) => s == text,
            Glob::Prefix(p) => text.starts_with(p.as_str()),
            Glob::Suffix(s) => text.ends_with(s.as_str()),
            Glob::General(p) => {
                let t: Vec<char> = text.chars().collect();
                wildcard(p, &t)
            }
        }
    }
}

/// Iterative wildcard matching with single-star backtracking: linear in practice.
fn wildcard(p: &[char], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("*", "anything", true),
            ("scale-*", "scale-deployment", true),
            ("scale-*", "rescale", false),
            ("*-node", "drain-node", true),
            ("ec2-*-instance", "ec2-stop-instance", true),
            ("ec2-*-instance", "ec2-stop-instances", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(Glob::new(p).matches(t), want, "{p} ~ {t}");
        }
    }
}
