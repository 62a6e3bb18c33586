//! Small text helpers shared by every loader: where a byte offset is, as a person counts.

/// The 1-based line and column (the column counts characters, not bytes) of byte
/// `offset` in `text`. An offset past the end is the end; one inside a character is the
/// start of that character.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut before = text.get(..offset);
    let mut back = offset;
    while before.is_none() && back > 0 {
        back -= 1;
        before = text.get(..back);
    }
    let before = before.unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn lines_and_columns_count_from_one_in_characters() {
        assert_eq!(line_col("", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é=1\nx", 3), (1, 3));
        assert_eq!(line_col("é", 1), (1, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
