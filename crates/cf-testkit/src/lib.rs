//! Test helpers shared by every crate's tests: where the shared datasets are, and whether a
//! backend service test may be skipped (only outside CI, and always loudly).
//!
//! Architecture invariant: used only as a dev-dependency; never linked into the binary.

use std::path::PathBuf;

/// True when running under CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The `shared/datasets` directory beside the repository (or `$CHENGFANG_DATASETS`).
/// Outside CI a missing directory returns `None` after a loud message; in CI it panics.
pub fn datasets() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CHENGFANG_DATASETS").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_dir() {
            return Some(c);
        }
    }
    assert!(
        !in_ci(),
        "shared/datasets is missing in CI: tests that need real data cannot run"
    );
    eprintln!(
        "\n*** SKIPPED: shared/datasets not found beside the repository; dataset tests did not run ***\n"
    );
    None
}

/// A backend URL for a service test: `$var` if set, else `default`. Returns `None` (after a loud
/// message) when the service cannot be reached outside CI; panics in CI.
pub fn service_url(var: &str, default: &str, reachable: bool) -> Option<String> {
    let url = std::env::var(var).unwrap_or_else(|_| default.to_string());
    if reachable {
        return Some(url);
    }
    assert!(
        !in_ci(),
        "{var}: backend {url} is not reachable in CI; .ci/run must start it"
    );
    eprintln!(
        "\n*** SKIPPED: backend {url} ({var}) is not reachable; its conformance tests did not run ***\n"
    );
    None
}

/// Whether a TCP port on 127.0.0.1 accepts connections.
pub fn tcp_open(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_millis(500)).is_ok()
        })
}
