#![no_main]
//! Fuzz target: discovery over untrusted text (with or without a column hint) never panics,
//! returns spans on character boundaries, and its windowed search finds exactly what the
//! whole-text reference finds.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let (hint, text) = s.split_once('\n').unwrap_or(("", s));
        let hint = (!hint.is_empty()).then_some(hint);
        let spans = cf_classify::scan(text, hint);
        assert_eq!(spans, cf_classify::scan_reference(text, hint));
        for sp in spans {
            assert!(text.is_char_boundary(sp.start) && text.is_char_boundary(sp.end) && sp.start < sp.end);
        }
    }
});
