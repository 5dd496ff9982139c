//! The smallest Pingora reverse proxy: the benchmark's reference for what Pingora itself costs.
//!
//! One fixed upstream peer, no filters, Pingora's `ServerConf` defaults except `threads: 1`,
//! the system allocator. Whatever Portcullis spends beyond this contender is ours; whatever
//! this contender spends beyond HAProxy is Pingora's.
//!
//! ```text
//! bare-pingora --listen 127.0.0.1:18084 --upstream 127.0.0.1:18080 [--work-stealing true|false]
//! ```
//!
//! The flags fall back to `BARE_PINGORA_LISTEN`, `BARE_PINGORA_UPSTREAM` and
//! `BARE_PINGORA_WORK_STEALING`. Addresses must be `IP:port` (no name resolution).
//! SIGINT stops it at once; SIGTERM waits Pingora's default grace period.

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

struct Args {
    listen: String,
    upstream: SocketAddr,
    work_stealing: Option<bool>,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut listen = std::env::var("BARE_PINGORA_LISTEN").ok();
    let mut upstream = std::env::var("BARE_PINGORA_UPSTREAM").ok();
    let mut work_stealing = std::env::var("BARE_PINGORA_WORK_STEALING").ok();
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut listen,
            "--upstream" => &mut upstream,
            "--work-stealing" => &mut work_stealing,
            "-h" | "--help" => {
                return Err(
                    "usage: bare-pingora --listen IP:PORT --upstream IP:PORT [--work-stealing true|false]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        };
        *slot = Some(argv.next().ok_or_else(|| format!("{flag} needs a value"))?);
    }
    let listen = listen.ok_or("--listen (or BARE_PINGORA_LISTEN) is required")?;
    listen
        .parse::<SocketAddr>()
        .map_err(|e| format!("--listen {listen:?}: {e}"))?;
    let upstream = upstream.ok_or("--upstream (or BARE_PINGORA_UPSTREAM) is required")?;
    let upstream = upstream
        .parse::<SocketAddr>()
        .map_err(|e| format!("--upstream {upstream:?}: {e}"))?;
    let work_stealing = match work_stealing.as_deref() {
        None | Some("") => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(v) => return Err(format!("--work-stealing {v:?}: expected true or false")),
    };
    Ok(Args {
        listen,
        upstream,
        work_stealing,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bare-pingora: {e}");
            return ExitCode::from(2);
        }
    };
    let defaults = ServerConf::default();
    let conf = ServerConf {
        threads: 1,
        work_stealing: args.work_stealing.unwrap_or(defaults.work_stealing),
        ..defaults
    };
    eprintln!(
        "bare-pingora: {} -> {} (threads 1, work_stealing {})",
        args.listen, args.upstream, conf.work_stealing
    );
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Bare {
            upstream: args.upstream,
        },
    );
    proxy.add_tcp(&args.listen);
    server.add_service(proxy);
    server.run_forever()
}
