//! Small string helpers shared by every module.

/// `parts.join(sep)`, with the same result and the same single allocation of the
/// exact length. std's `join` is a copy of its separator-specialised code per element
/// type (`[String]`, `[&str]`), 1.4–1.6 KB each on mipsel; this one is a short loop.
pub trait Joined {
    fn joined(&self, sep: &str) -> String;
}

impl<S: AsRef<str>> Joined for [S] {
    fn joined(&self, sep: &str) -> String {
        let len = self.iter().map(|p| p.as_ref().len()).sum::<usize>()
            + sep.len() * self.len().saturating_sub(1);
        let mut out = String::with_capacity(len);
        for (i, part) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(sep);
            }
            out.push_str(part.as_ref());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Joined;

    #[test]
    fn joins_as_std_does() {
        let owned = ["a".to_string(), String::new(), "bc".to_string()];
        assert_eq!(owned.joined(", "), owned.join(", "));
        assert_eq!(["x"].joined("-"), "x");
        assert_eq!(Vec::<&str>::new().joined("-"), "");
        assert_eq!(["a", "b"][..].joined(""), "ab");
        let s = ["ab", "c"].joined(" -> ");
        assert_eq!((s.as_str(), s.capacity()), ("ab -> c", 7));
    }
}
