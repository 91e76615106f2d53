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

/// SoftHSM2's PKCS#11 module (`$CHENGFANG_PKCS11_MODULE` or Debian's path), or `None` after a loud
/// message when it is not installed (outside CI only; in CI it panics).
pub fn softhsm_module() -> Option<String> {
    let m = std::env::var("CHENGFANG_PKCS11_MODULE")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    if std::path::Path::new(&m).exists() {
        return Some(m);
    }
    assert!(
        !in_ci(),
        "SoftHSM2 ({m}) is missing in CI; .ci/run must install softhsm2"
    );
    eprintln!("\n*** SKIPPED: SoftHSM2 not installed ({m}); HSM tests did not run ***\n");
    None
}

/// A fresh SoftHSM2 token labelled `label` with user PIN `pin`, kept under `dir`; returns the
/// configuration file to pass as `SOFTHSM2_CONF`.
pub fn softhsm_token(dir: &std::path::Path, label: &str, pin: &str) -> PathBuf {
    let conf = dir.join("softhsm2.conf");
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("create the token directory");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("write softhsm2.conf");
    let out = std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            "87654321",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util runs");
    assert!(
        out.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

/// The `mosquitto` broker binary, or `None` after a loud message when it is not installed
/// (outside CI only; in CI it panics, because `.ci/run` installs it).
pub fn mosquitto_binary() -> Option<PathBuf> {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if std::path::Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    assert!(
        !in_ci(),
        "mosquitto is not installed in CI; .ci/run must install it"
    );
    eprintln!("\n*** SKIPPED: mosquitto not installed; broker tests did not run ***\n");
    None
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The committed cargo-fuzz corpus of `target` (`fuzz/corpus/<target>`).
pub fn fuzz_corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Feed every file of `target`'s corpus to `f`, whole and cut at the start, after one byte, in the
/// middle and one byte short, as a stable-Rust regression test of the fuzz target. Returns how
/// many files there were.
pub fn replay_corpus(target: &str, f: fn(&[u8])) -> usize {
    let dir = fuzz_corpus(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(e.expect("corpus entry").path()).expect("corpus file");
        for cut in [
            data.len(),
            0,
            1,
            data.len() / 2,
            data.len().saturating_sub(1),
        ] {
            f(&data[..cut]);
        }
        n += 1;
    }
    n
}

/// Check that seed `name` of `target` is committed with exactly `bytes`; with
/// `CHENGFANG_WRITE_SEEDS=1` it is (re)written first.
pub fn check_seed(target: &str, name: &str, bytes: &[u8]) {
    let p = fuzz_corpus(target).join(name);
    if std::env::var_os("CHENGFANG_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(p.parent().expect("corpus dir")).expect("create corpus dir");
        std::fs::write(&p, bytes).expect("write seed");
    }
    assert_eq!(
        std::fs::read(&p).unwrap_or_default(),
        bytes,
        "seed {name} is stale; rerun with CHENGFANG_WRITE_SEEDS=1"
    );
}

/// The UDP datagrams of a classic pcap file (Ethernet with VLAN tags, raw IP or Linux cooked
/// capture; IPv4 and IPv6): `(source address, payload)` in capture order. Test data reader for
/// the flow collectors; anything it cannot follow is skipped.
pub fn pcap_udp(path: &std::path::Path) -> Vec<(std::net::SocketAddr, Vec<u8>)> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if data.len() < 24 {
        return Vec::new();
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let le = matches!(magic, [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]);
    let u32at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let linktype = u32at(&data, 20);
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let incl = u32at(&data, at + 8) as usize;
        let start = at + 16;
        let end = (start + incl).min(data.len());
        let frame = &data[start..end];
        at = start + incl;
        let ip = match linktype {
            1 => {
                let mut off = 12;
                let mut ethertype = frame
                    .get(off..off + 2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]));
                while matches!(ethertype, Some(0x8100 | 0x88a8)) {
                    off += 4;
                    ethertype = frame
                        .get(off..off + 2)
                        .map(|b| u16::from_be_bytes([b[0], b[1]]));
                }
                frame.get(off + 2..)
            }
            101 => Some(frame),
            113 => frame.get(16..),
            _ => None,
        };
        let Some(ip) = ip else { continue };
        let Some(&v) = ip.first() else { continue };
        let (src, proto, l4) = match v >> 4 {
            4 if ip.len() >= 20 => {
                let ihl = usize::from(v & 0x0f) * 4;
                let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
                (src, ip[9], ip.get(ihl..))
            }
            6 if ip.len() >= 40 => {
                let mut s = [0u8; 16];
                s.copy_from_slice(&ip[8..24]);
                (IpAddr::V6(Ipv6Addr::from(s)), ip[6], ip.get(40..))
            }
            _ => continue,
        };
        let Some(udp) = l4.filter(|_| proto == 17) else {
            continue;
        };
        if udp.len() < 8 {
            continue;
        }
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let len = usize::from(u16::from_be_bytes([udp[4], udp[5]])).clamp(8, udp.len());
        out.push((SocketAddr::new(src, sport), udp[8..len].to_vec()));
    }
    out
}

/// The regular files of a tar archive (ustar, GNU long names, PAX `path`): `(path, bytes)`.
/// Test data reader for archives in ../shared/datasets.
pub fn tar_files(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let field = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).to_string()
    };
    let octal = |b: &[u8]| {
        let s = field(b);
        usize::from_str_radix(s.trim(), 8).unwrap_or(0)
    };
    let mut out = Vec::new();
    let mut at = 0;
    let mut long_name: Option<String> = None;
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let size = octal(&h[124..136]);
        let kind = h[156];
        let body = &tar[at + 512..(at + 512 + size).min(tar.len())];
        at += 512 + size.div_ceil(512) * 512;
        match kind {
            b'L' => long_name = Some(field(body)),
            b'x' => {
                // PAX records: "<len> key=value\n".
                for rec in String::from_utf8_lossy(body).split('\n') {
                    if let Some((_, kv)) = rec.split_once(' ')
                        && let Some(p) = kv.strip_prefix("path=")
                    {
                        long_name = Some(p.to_string());
                    }
                }
            }
            b'0' | 0 => {
                let name = long_name.take().unwrap_or_else(|| {
                    let prefix = field(&h[345..500]);
                    let name = field(&h[0..100]);
                    if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix}/{name}")
                    }
                });
                let name = name.strip_prefix("./").unwrap_or(&name).to_string();
                out.push((name, body.to_vec()));
            }
            _ => {
                long_name = None;
            }
        }
    }
    out
}

/// A zstd-compressed file of the datasets, decompressed (panics with the path if unreadable).
pub fn read_zstd(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    ruzstd::decoding::StreamingDecoder::new(f)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

/// A gzip-compressed text file of the datasets, decompressed (panics with the path if unreadable).
pub fn read_gz(path: &std::path::Path) -> String {
    use std::io::Read;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}
