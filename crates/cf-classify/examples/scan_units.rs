//! Scan every `{"key", "text"}` line of a units file on one thread and print the number of spans
//! (a profiling harness for the recognisers: no output formatting, no worker threads, the
//! binary's allocator). `PROBE=text` scans one text 200,000 times instead.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: scan_units FILE.jsonl");
    let data = std::fs::read_to_string(&path).expect("read units");
    let texts: Vec<(String, String)> = data
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["key"].as_str().unwrap_or_default().to_string(),
                v["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    if let Ok(probe) = std::env::var("PROBE") {
        let t = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..200_000 {
            n += cf_classify::scan(std::hint::black_box(&probe), None).len();
        }
        eprintln!(
            "probe: {n} spans, {:.0} ns per scan",
            t.elapsed().as_secs_f64() * 1e9 / 200_000.0
        );
        return;
    }
    let t = std::time::Instant::now();
    let (mut spans, mut bytes) = (0usize, 0usize);
    for (k, text) in &texts {
        spans += cf_classify::scan(text, cf_classify::hint_from_key(k)).len();
        bytes += text.len();
    }
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "{spans} spans, {bytes} bytes, {s:.3} s, {:.1} MB/s",
        bytes as f64 / s / 1e6
    );
}
