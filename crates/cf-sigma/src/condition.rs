//! The condition language: `and`, `or`, `not`, parentheses, `1 of x*`, `all of them`; compiled
//! against the rule's named selections. Aggregations (`| count()`) belong to correlation rules.

use crate::SigmaError;

/// A compiled condition over selection indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    Sel(usize),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    pub(crate) fn eval(&self, sel: &mut dyn FnMut(usize) -> bool) -> bool {
        match self {
            Cond::Sel(i) => sel(*i),
            Cond::And(v) => v.iter().all(|c| c.eval(sel)),
            Cond::Or(v) => v.iter().any(|c| c.eval(sel)),
            Cond::Not(c) => !c.eval(sel),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum T {
    Word(String),
    Open,
    Close,
}

fn lex(s: &str) -> Result<Vec<T>, SigmaError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' | ')' | ' ' | '\t' | '\n' | '\r' => {
                if !cur.is_empty() {
                    out.push(T::Word(std::mem::take(&mut cur)));
                }
                match c {
                    '(' => out.push(T::Open),
                    ')' => out.push(T::Close),
                    _ => {}
                }
            }
            '|' => {
                return Err(SigmaError::Unsupported(
                    "aggregation in the condition (`| count()` …); use a correlation rule".into(),
                ));
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(T::Word(cur));
    }
    Ok(out)
}

fn glob_match(pat: &str, name: &str) -> bool {
    match pat.find('*') {
        None => pat == name,
        Some(i) => {
            let (pre, post) = (&pat[..i], &pat[i + 1..]);
            name.starts_with(pre)
                && name.len() >= pre.len() + post.len()
                && glob_match_rest(post, &name[pre.len()..])
        }
    }
}

fn glob_match_rest(pat: &str, name: &str) -> bool {
    if !pat.contains('*') {
        return name.ends_with(pat);
    }
    (0..=name.len())
        .filter(|&i| name.is_char_boundary(i))
        .any(|i| glob_match(pat, &name[i..]))
}

struct Parser<'a> {
    toks: Vec<T>,
    pos: usize,
    names: &'a [String],
}

impl Parser<'_> {
    fn peek_word(&self) -> Option<&str> {
        match self.toks.get(self.pos) {
            Some(T::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Cond, SigmaError> {
        let mut v = vec![self.and()?];
        while self
            .peek_word()
            .is_some_and(|w| w.eq_ignore_ascii_case("or"))
        {
            self.pos += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Cond::Or(v)
        })
    }

    fn and(&mut self) -> Result<Cond, SigmaError> {
        let mut v = vec![self.not()?];
        while self
            .peek_word()
            .is_some_and(|w| w.eq_ignore_ascii_case("and"))
        {
            self.pos += 1;
            v.push(self.not()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Cond::And(v)
        })
    }

    fn not(&mut self) -> Result<Cond, SigmaError> {
        if self
            .peek_word()
            .is_some_and(|w| w.eq_ignore_ascii_case("not"))
        {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond, SigmaError> {
        match self.toks.get(self.pos).cloned() {
            Some(T::Open) => {
                self.pos += 1;
                let c = self.or()?;
                if self.toks.get(self.pos) != Some(&T::Close) {
                    return Err(SigmaError::Condition("missing `)`".into()));
                }
                self.pos += 1;
                Ok(c)
            }
            Some(T::Word(w)) => {
                self.pos += 1;
                let quant =
                    w.eq_ignore_ascii_case("all") || w == "1" || w.eq_ignore_ascii_case("any");
                if quant
                    && self
                        .peek_word()
                        .is_some_and(|x| x.eq_ignore_ascii_case("of"))
                {
                    self.pos += 1;
                    let target = self
                        .peek_word()
                        .ok_or_else(|| SigmaError::Condition(format!("`{w} of` needs a name")))?
                        .to_string();
                    self.pos += 1;
                    let picked: Vec<Cond> = if target == "them" {
                        self.names
                            .iter()
                            .enumerate()
                            .filter(|(_, n)| !n.starts_with('_'))
                            .map(|(i, _)| Cond::Sel(i))
                            .collect()
                    } else {
                        self.names
                            .iter()
                            .enumerate()
                            .filter(|(_, n)| glob_match(&target, n))
                            .map(|(i, _)| Cond::Sel(i))
                            .collect()
                    };
                    if picked.is_empty() {
                        return Err(SigmaError::Condition(format!(
                            "`{w} of {target}` matches no selection"
                        )));
                    }
                    return Ok(if w.eq_ignore_ascii_case("all") {
                        Cond::And(picked)
                    } else {
                        Cond::Or(picked)
                    });
                }
                let i = self
                    .names
                    .iter()
                    .position(|n| *n == w)
                    .ok_or_else(|| SigmaError::Condition(format!("unknown selection `{w}`")))?;
                Ok(Cond::Sel(i))
            }
            Some(T::Close) => Err(SigmaError::Condition("unexpected `)`".into())),
            None => Err(SigmaError::Condition("ends too early".into())),
        }
    }
}

/// Compile one condition string against the selection names.
pub(crate) fn parse(cond: &str, names: &[String]) -> Result<Cond, SigmaError> {
    let mut p = Parser {
        toks: lex(cond)?,
        pos: 0,
        names,
    };
    let c = p.or()?;
    if p.pos != p.toks.len() {
        return Err(SigmaError::Condition(format!(
            "unexpected text after position {} in `{cond}`",
            p.pos
        )));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        [
            "selection",
            "selection_img",
            "filter_main",
            "filter_opt",
            "_hidden",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn precedence_and_quantifiers() {
        let n = names();
        let c = parse("selection and not 1 of filter_*", &n).unwrap();
        assert_eq!(
            c,
            Cond::And(vec![
                Cond::Sel(0),
                Cond::Not(Box::new(Cond::Or(vec![Cond::Sel(2), Cond::Sel(3)])))
            ])
        );
        let c = parse("selection or filter_main and filter_opt", &n).unwrap();
        assert_eq!(
            c,
            Cond::Or(vec![
                Cond::Sel(0),
                Cond::And(vec![Cond::Sel(2), Cond::Sel(3)])
            ])
        );
        assert_eq!(
            parse("all of them", &n).unwrap(),
            Cond::And(vec![Cond::Sel(0), Cond::Sel(1), Cond::Sel(2), Cond::Sel(3)])
        );
        assert_eq!(parse("(selection)", &n).unwrap(), Cond::Sel(0));
        assert!(parse("selection | count() > 5", &n).is_err());
        assert!(parse("selection and", &n).is_err());
        assert!(parse("nosuch", &n).is_err());
        assert!(parse("(selection", &n).is_err());
        assert!(parse("1 of nothing*", &n).is_err());
    }
}
