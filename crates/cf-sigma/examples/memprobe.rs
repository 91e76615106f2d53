use cf_sigma::{EvtxEvent, FlatEvent, RuleSet, SigmaDocument, compile_documents};
fn walk(p: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let q = e.path();
        if q.is_dir() {
            walk(&q, out)
        } else if q.extension().is_some_and(|x| x == "yml") {
            out.push(q)
        }
    }
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut files = Vec::new();
    walk(std::path::Path::new(&a[1]), &mut files);
    files.sort();
    let mut set = RuleSet::new();
    for f in files {
        let t = std::fs::read_to_string(&f).unwrap();
        if let Ok(d) = compile_documents(&t) {
            for x in d {
                if let SigmaDocument::Detection(r) = x {
                    set.add(*r)
                }
            }
        }
    }
    eprintln!("loaded {}", set.rules().len());
    let text = std::fs::read_to_string(&a[2]).unwrap();
    let mut hits = Vec::new();
    let mut n = 0;
    for l in text.lines() {
        let v: FlatEvent = serde_json::from_str(l).unwrap();
        set.match_evtx(&EvtxEvent::flat(&v), &mut hits);
        n += hits.len();
    }
    eprintln!("hits {n}");
}
