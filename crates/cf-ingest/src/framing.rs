//! Syslog over TCP (RFC 6587): octet counting (`LEN SP MSG`) or newline-delimited frames, chosen
//! per frame by its first byte as rsyslog and syslog-ng do. Frames longer than the limit are cut
//! and reported, never buffered without bound.

/// One result of framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message.
    Message(Vec<u8>),
    /// Bytes that could not be framed (bad length, oversize), kept for inspection.
    Malformed {
        /// Why.
        reason: String,
        /// The bytes (at most the limit).
        raw: Vec<u8>,
    },
}

/// Incremental framer for one TCP connection.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    max: usize,
}

impl Framer {
    /// A framer that accepts messages up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Framer {
            buf: Vec::new(),
            max: max.max(64),
        }
    }

    /// Feed bytes; returns every frame completed by them.
    pub fn push(&mut self, data: &[u8]) -> Vec<Frame> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            // Leading newlines between frames are noise.
            while matches!(self.buf.first(), Some(b'\n' | b'\r')) {
                self.buf.remove(0);
            }
            let Some(&first) = self.buf.first() else {
                break;
            };
            if first.is_ascii_digit() {
                // Octet counting: digits, one space, then exactly LEN bytes.
                let Some(sp) = self.buf.iter().position(|b| *b == b' ') else {
                    if self.buf.len() > 10 || !self.buf.iter().all(u8::is_ascii_digit) {
                        out.push(self.cut_line("octet count without a space"));
                        continue;
                    }
                    break;
                };
                let digits = &self.buf[..sp];
                let len = std::str::from_utf8(digits)
                    .ok()
                    .filter(|s| s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<usize>().ok());
                match len {
                    Some(n) if n <= self.max => {
                        if self.buf.len() < sp + 1 + n {
                            break;
                        }
                        let msg = self.buf[sp + 1..sp + 1 + n].to_vec();
                        self.buf.drain(..sp + 1 + n);
                        out.push(Frame::Message(msg));
                    }
                    Some(n) => {
                        out.push(Frame::Malformed {
                            reason: format!("octet count {n} exceeds the limit of {}", self.max),
                            raw: self.buf[..self.buf.len().min(self.max)].to_vec(),
                        });
                        // Resynchronise at the next newline.
                        let _ = self.cut_line("");
                    }
                    None => out.push(self.cut_line("octet count is not a number")),
                }
            } else {
                match self.buf.iter().position(|b| *b == b'\n') {
                    Some(nl) => {
                        let mut msg: Vec<u8> = self.buf.drain(..=nl).collect();
                        msg.pop();
                        if msg.last() == Some(&b'\r') {
                            msg.pop();
                        }
                        if msg.len() > self.max {
                            out.push(Frame::Malformed {
                                reason: format!("line longer than {} bytes", self.max),
                                raw: msg[..self.max].to_vec(),
                            });
                        } else {
                            out.push(Frame::Message(msg));
                        }
                    }
                    None if self.buf.len() > self.max => {
                        out.push(Frame::Malformed {
                            reason: format!("line longer than {} bytes", self.max),
                            raw: self.buf[..self.max].to_vec(),
                        });
                        // Drop until the next newline arrives.
                        self.buf.clear();
                    }
                    None => break,
                }
            }
        }
        out
    }

    fn cut_line(&mut self, reason: &str) -> Frame {
        let end = self
            .buf
            .iter()
            .position(|b| *b == b'\n')
            .map_or(self.buf.len(), |i| i + 1);
        let raw: Vec<u8> = self.buf.drain(..end).collect();
        Frame::Malformed {
            reason: reason.to_string(),
            raw: raw[..raw.len().min(self.max)].to_vec(),
        }
    }

    /// The connection closed: whatever is left is a last newline-less message or malformed.
    pub fn finish(&mut self) -> Option<Frame> {
        if self.buf.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.buf);
        if rest.first().is_some_and(u8::is_ascii_digit) && rest.contains(&b' ') {
            return Some(Frame::Malformed {
                reason: "connection closed inside an octet-counted frame".into(),
                raw: rest[..rest.len().min(self.max)].to_vec(),
            });
        }
        Some(Frame::Message(rest[..rest.len().min(self.max)].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(f: Vec<Frame>) -> Vec<String> {
        f.into_iter()
            .map(|x| match x {
                Frame::Message(m) => String::from_utf8_lossy(&m).into_owned(),
                Frame::Malformed { reason, .. } => format!("!{reason}"),
            })
            .collect()
    }

    #[test]
    fn octet_counting_and_newlines_mix_and_split_anywhere() {
        let stream = b"12 <13>1 - - - hi\n<13>Mar  1 00:00:00 h t: two\r\n5 three";
        // Fed one byte at a time, the same frames come out.
        let mut f = Framer::new(1024);
        let mut got = Vec::new();
        for b in stream {
            got.extend(msgs(f.push(&[*b])));
        }
        assert_eq!(
            got,
            [
                "<13>1 - - - ",
                "hi",
                "<13>Mar  1 00:00:00 h t: two",
                "three"
            ]
        );
    }

    #[test]
    fn oversize_and_bad_counts_are_reported_not_buffered() {
        let mut f = Framer::new(64);
        let got = msgs(f.push(b"999999 x\nok line\n"));
        assert_eq!(got[0], "!octet count 999999 exceeds the limit of 64");
        assert_eq!(got[1], "ok line");
        let long = vec![b'a'; 200];
        let got = msgs(f.push(&long));
        assert!(got[0].starts_with("!line longer than 64"));
        assert!(f.buf.len() <= 64);
        let mut f = Framer::new(64);
        assert!(msgs(f.push(b"12345678901x\n"))[0].starts_with("!octet count"));
        f.push(b"40 short");
        assert!(matches!(f.finish(), Some(Frame::Malformed { .. })));
    }
}
