#![no_main]
//! Fuzz target: discovery over untrusted text (with or without a column hint) never panics and
//! returns spans on character boundaries.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let (hint, text) = s.split_once('\n').unwrap_or(("", s));
        for sp in cf_classify::scan(text, (!hint.is_empty()).then_some(hint)) {
            assert!(text.is_char_boundary(sp.start) && text.is_char_boundary(sp.end) && sp.start < sp.end);
        }
    }
});
