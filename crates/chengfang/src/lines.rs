//! Reading JSONL inputs line by line, as `BufRead::lines` does but faster: the newline is found
//! with the SIMD `memchr` (std's line reader searches byte by byte: 2–3 % of a hunt).

use std::io::{BufRead, ErrorKind};

/// The lines of `r` exactly as `r.lines()` gives them: without `\n` (and a `\r` before it), an
/// `InvalidData` error for a line that is not UTF-8 (the reading goes on after it).
pub struct Lines<R> {
    r: R,
}

/// Split `r` into lines.
pub fn lines<R: BufRead>(r: R) -> Lines<R> {
    Lines { r }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = std::io::Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        loop {
            let buf = match self.r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            };
            if buf.is_empty() {
                return (!line.is_empty()).then(|| text(line));
            }
            match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    line.extend_from_slice(&buf[..i]);
                    self.r.consume(i + 1);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Some(text(line));
                }
                None => {
                    let n = buf.len();
                    line.extend_from_slice(buf);
                    self.r.consume(n);
                }
            }
        }
    }
}

fn text(line: Vec<u8>) -> std::io::Result<String> {
    String::from_utf8(line).map_err(|_| {
        std::io::Error::new(ErrorKind::InvalidData, "stream did not contain valid UTF-8")
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use std::io::BufRead;

    proptest! {
        /// Whatever the bytes and the buffer size, the lines are those `BufRead::lines` gives.
        #[test]
        fn splits_as_std_does(
            bytes in prop::collection::vec(prop::sample::select(b"ab\r\n\xff\xc3\xa9".to_vec()), 0..200),
            cap in 1usize..16,
        ) {
            let ours: Vec<_> = super::lines(std::io::BufReader::with_capacity(cap, &bytes[..]))
                .map(|l| l.map_err(|e| e.kind()))
                .collect();
            let std: Vec<_> = std::io::BufReader::with_capacity(cap, &bytes[..])
                .lines()
                .map(|l| l.map_err(|e| e.kind()))
                .collect();
            prop_assert_eq!(ours, std);
        }
    }
}
