//! "Did you mean …?": the known name closest to a mistyped one.
//!
//! Used for unknown keys in `bridge.toml`, unknown platforms and options in platform specs:
//! a typo should be answered with the fix, not a list to search.

/// The candidate closest to `input`, if one is close enough to be what was meant: at most
/// two edits away (a transposition counts as one), and fewer edits than `input` has
/// characters. Case is ignored. Ties go to the earlier candidate.
#[must_use]
pub fn closest<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let input = input.to_lowercase();
    let limit = 2.min(input.chars().count().saturating_sub(1));
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = edit_distance(&input, &candidate.to_lowercase());
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, name)| name)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// adjacent characters each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the table: two back, one back, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("mode", "mode"), 0);
        assert_eq!(edit_distance("mdoe", "mode"), 1);
        assert_eq!(edit_distance("rendr", "render"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggests_only_what_is_close() {
        let names = ["local", "process", "render", "netlify", "github"];
        assert_eq!(closest("rendr", names), Some("render"));
        assert_eq!(closest("Netlfiy", names), Some("netlify"));
        assert_eq!(closest("gihtub", names), Some("github"));
        assert_eq!(closest("heroku", names), None);
        assert_eq!(closest("x", names), None);
        assert_eq!(
            closest("sync.mdoe", ["sync.mode", "sync.source"]),
            Some("sync.mode")
        );
    }
}
