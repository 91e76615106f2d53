//! How log text is cut into searchable words: runs of letters and digits, except that CJK
//! characters are one token each, so a Chinese phrase of any length is found as a phrase query.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Whether `c` is written without spaces between words (Han, kana, Hangul).
fn ideographic(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF        // Hiragana, Katakana
        | 0x3400..=0x4DBF      // CJK Extension A
        | 0x4E00..=0x9FFF      // CJK Unified Ideographs
        | 0xAC00..=0xD7AF      // Hangul syllables
        | 0xF900..=0xFAFF      // CJK Compatibility Ideographs
        | 0x20000..=0x3FFFF) // CJK Extensions B and later
}

/// The log tokenizer (lower-casing and length limits are filters added after it).
#[derive(Debug, Clone, Default)]
pub struct LogTokenizer {
    tokens: Vec<Token>,
}

/// Its token stream.
#[derive(Debug)]
pub struct LogTokenStream<'a> {
    tokens: &'a mut Vec<Token>,
    at: usize,
}

impl LogTokenizer {
    fn cut(&mut self, text: &str) {
        self.tokens.clear();
        let mut start: Option<usize> = None;
        let push = |tokens: &mut Vec<Token>, from: usize, to: usize| {
            let position = tokens.len();
            tokens.push(Token {
                offset_from: from,
                offset_to: to,
                position,
                text: text[from..to].to_string(),
                position_length: 1,
            });
        };
        for (i, c) in text.char_indices() {
            if ideographic(c) {
                if let Some(s) = start.take() {
                    push(&mut self.tokens, s, i);
                }
                push(&mut self.tokens, i, i + c.len_utf8());
            } else if c.is_alphanumeric() {
                start.get_or_insert(i);
            } else if let Some(s) = start.take() {
                push(&mut self.tokens, s, i);
            }
        }
        if let Some(s) = start {
            push(&mut self.tokens, s, text.len());
        }
    }
}

impl Tokenizer for LogTokenizer {
    type TokenStream<'a> = LogTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> LogTokenStream<'a> {
        self.cut(text);
        LogTokenStream {
            tokens: &mut self.tokens,
            at: 0,
        }
    }
}

impl TokenStream for LogTokenStream<'_> {
    fn advance(&mut self) -> bool {
        self.at += 1;
        self.at <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self
            .at
            .saturating_sub(1)
            .min(self.tokens.len().saturating_sub(1))]
    }

    fn token_mut(&mut self) -> &mut Token {
        let i = self
            .at
            .saturating_sub(1)
            .min(self.tokens.len().saturating_sub(1));
        &mut self.tokens[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        let mut t = LogTokenizer::default();
        let mut st = t.token_stream(s);
        let mut out = Vec::new();
        while st.advance() {
            out.push(st.token().text.clone());
        }
        out
    }

    #[test]
    fn cuts_logs_and_cjk() {
        assert_eq!(
            words(r"C:\Windows\System32\cmd.exe /c whoami"),
            ["C", "Windows", "System32", "cmd", "exe", "c", "whoami"]
        );
        assert_eq!(
            words("用户admin登录失败 from 10.0.0.5"),
            [
                "用", "户", "admin", "登", "录", "失", "败", "from", "10", "0", "0", "5"
            ]
        );
        assert!(words("  ... ").is_empty());
        assert_eq!(words("é-ü"), ["é", "ü"]);
    }

    proptest::proptest! {
        #[test]
        fn offsets_are_char_boundaries_and_positions_count_up(s in "\\PC{0,64}") {
            let mut t = LogTokenizer::default();
            let mut st = t.token_stream(&s);
            let mut n = 0;
            while st.advance() {
                let tok = st.token();
                proptest::prop_assert_eq!(&s[tok.offset_from..tok.offset_to], tok.text.as_str());
                proptest::prop_assert_eq!(tok.position, n);
                n += 1;
            }
        }
    }
}
