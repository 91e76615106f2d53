//! The collection edge (SA-1, AUD-1): syslog over UDP and TCP (octet counting or newlines,
//! RFC 6587) and NetFlow/IPFIX over UDP handed to the platform's `LogIntake`, which publishes
//! `log.*` events and keeps unparseable or unframeable input as `log.malformed` with its raw
//! text; a bad sender never stops the listener, and datagrams the kernel drops are counted and
//! alarmed.
//!
//! Architecture invariant: the only crate that owns collection sockets; it knows no storage.

use cf_ingest::framing::{Frame, Framer};
pub use cf_platform::logs::Counters;
use cf_platform::logs::LogIntake;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// Largest syslog message accepted (RFC 5425 asks receivers to take at least 2 KiB; we take 64).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// How often the UDP listeners look at the kernel's drop counter.
pub const LOSS_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Datagrams the kernel dropped (receive buffer full) on the UDP sockets bound to local `port`,
/// from `/proc/net/udp` and `/proc/net/udp6`; `None` where neither can be read (not Linux).
pub fn udp_drops(port: u16) -> Option<u64> {
    let mut found = None;
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let mut total = found.unwrap_or(0u64);
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            let local_port = cols
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port)
                && let Some(d) = cols.get(12).and_then(|d| d.parse::<u64>().ok())
            {
                total += d;
            }
        }
        found = Some(total);
    }
    found
}

/// Watches one UDP listener's kernel drop counter and reports increases to the intake.
struct LossWatch {
    port: u16,
    transport: &'static str,
    seen: u64,
}

impl LossWatch {
    fn new(socket: &tokio::net::UdpSocket, transport: &'static str) -> Self {
        let port = socket.local_addr().map_or(0, |a| a.port());
        LossWatch {
            port,
            transport,
            // Drops before this listener started are not its own.
            seen: udp_drops(port).unwrap_or(0),
        }
    }

    async fn check(&mut self, intake: &LogIntake) {
        if let Some(now) = udp_drops(self.port)
            && now > self.seen
        {
            intake
                .udp_loss(self.transport, self.port, now - self.seen)
                .await;
            self.seen = now;
        }
    }
}

/// Receive syslog datagrams until `stop` turns true; kernel drops are counted and alarmed.
pub async fn udp(socket: tokio::net::UdpSocket, intake: LogIntake, stop: watch::Receiver<bool>) {
    udp_checked(socket, intake, stop, LOSS_CHECK).await;
}

/// As [`udp`], looking at the drop counter every `every`.
pub async fn udp_checked(
    socket: tokio::net::UdpSocket,
    intake: LogIntake,
    mut stop: watch::Receiver<bool>,
    every: std::time::Duration,
) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut loss = LossWatch::new(&socket, "syslog-udp");
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    intake.syslog(&buf[..n], &peer.ip().to_string(), "udp").await;
                }
                Err(e) => tracing::warn!(error = %e, "syslog UDP receive failed"),
            },
            _ = tick.tick() => loss.check(&intake).await,
            _ = stop.changed() => if *stop.borrow() { return; },
        }
    }
}

/// Receive NetFlow v5/v9 and IPFIX datagrams until `stop` turns true; templates are kept per
/// exporter (address and port), so exporters behind one collector do not mix.
pub async fn netflow_udp(
    socket: tokio::net::UdpSocket,
    intake: LogIntake,
    mut stop: watch::Receiver<bool>,
) {
    // The largest UDP payload: exporters fill jumbo frames.
    let mut buf = vec![0u8; 65_535];
    let mut loss = LossWatch::new(&socket, "netflow-udp");
    let mut tick = tokio::time::interval(LOSS_CHECK);
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    intake.netflow(&buf[..n], peer).await;
                }
                Err(e) => tracing::warn!(error = %e, "NetFlow UDP receive failed"),
            },
            _ = tick.tick() => loss.check(&intake).await,
            _ = stop.changed() => if *stop.borrow() { return; },
        }
    }
}

/// Accept syslog TCP connections until `stop` turns true; each connection is framed by RFC 6587
/// and read with backpressure (the next read waits for the bus).
pub async fn tcp(
    listener: tokio::net::TcpListener,
    intake: LogIntake,
    stop: watch::Receiver<bool>,
) {
    accept(listener, None, intake, stop).await;
}

/// As [`tcp`], inside TLS (RFC 5425) with `tls` (the platform's server certificate).
pub async fn tls(
    listener: tokio::net::TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    intake: LogIntake,
    stop: watch::Receiver<bool>,
) {
    accept(
        listener,
        Some(tokio_rustls::TlsAcceptor::from(tls)),
        intake,
        stop,
    )
    .await;
}

async fn accept(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    intake: LogIntake,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    intake.counters().connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (intake, stop, tls) = (intake.clone(), stop.clone(), tls.clone());
                    let peer = peer.ip().to_string();
                    tokio::spawn(async move {
                        match tls {
                            None => serve(stream, peer, "tcp", intake, stop).await,
                            Some(acc) => {
                                // A slow or broken handshake must not hold a task for ever.
                                match tokio::time::timeout(std::time::Duration::from_secs(10), acc.accept(stream)).await {
                                    Ok(Ok(s)) => serve(s, peer, "tls", intake, stop).await,
                                    _ => tracing::debug!(%peer, "syslog TLS handshake failed"),
                                }
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "syslog TCP accept failed"),
            },
            _ = stop.changed() => if *stop.borrow() { return; },
        }
    }
}

async fn serve<S: tokio::io::AsyncRead + Unpin>(
    mut stream: S,
    peer: String,
    transport: &'static str,
    intake: LogIntake,
    mut stop: watch::Receiver<bool>,
) {
    let mut framer = Framer::new(MAX_MESSAGE);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = stream.read(&mut buf) => r.unwrap_or(0),
            _ = stop.changed() => if *stop.borrow() { 0 } else { continue },
        };
        let frames = if n == 0 {
            framer.finish().into_iter().collect()
        } else {
            framer.push(&buf[..n])
        };
        // One publish per read; the next read waits for it, so a sender faster than the bus
        // meets TCP flow control instead of growing our memory.
        let mut out = Vec::with_capacity(frames.len());
        for f in frames {
            match f {
                Frame::Message(m) => {
                    intake.syslog_into(&m, &peer, transport, &mut out);
                }
                Frame::Malformed { reason, raw } => {
                    intake.malformed_into(
                        &raw,
                        &peer,
                        transport,
                        &format!("unframeable: {reason}"),
                        &mut out,
                    );
                }
            }
        }
        // A bus that refuses (disk full, broker down) holds the sender back too: the read is
        // retried, never dropped, until the bus takes it or the collector stops.
        let mut wait = std::time::Duration::from_millis(100);
        while intake.flush(&out).await.is_err() && !*stop.borrow() {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(5));
        }
        if n == 0 {
            return;
        }
    }
}
