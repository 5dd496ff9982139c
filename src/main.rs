//! `portcullis`: run the gateway, validate its config, or use one of the operator tools
//! (conf/README.md §1).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pingora::server::configuration::Opt;
use portcullis::tools::{self, ToolError};

/// jemalloc by default: under glibc malloc every idle connection keeps its zero-filled read
/// buffer resident and a burst of connections never gives its memory back (README, "Memory per
/// connection"). `--features mimalloc` or `--no-default-features` (the system allocator) build
/// the alternatives the README compares.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// jemalloc's settings, read once at its start: a background thread returns freed pages after
/// a second (`dirty_decay_ms`) instead of on the next allocation, so memory comes back even
/// when the gateway goes quiet after a burst.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[export_name = "malloc_conf"]
pub static JEMALLOC_CONF: JemallocConf = JemallocConf(
    c"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0"
        .as_ptr(),
);

/// A C string pointer jemalloc reads at start-up; it points at a static literal.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[repr(transparent)]
pub struct JemallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to an immutable static C string; nothing ever writes through it.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
unsafe impl Sync for JemallocConf {}

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "JWT-validating API gateway on Pingora"
)]
struct Cli {
    /// Pingora's flags: -c config, -t test, -d daemon, -u upgrade.
    #[command(flatten)]
    pingora: Opt,
    #[command(subcommand)]
    tool: Option<Tool>,
}

/// Tools for operators and tests; none of them starts a gateway.
#[derive(Subcommand)]
enum Tool {
    /// Generate a signing key: DIR/KID.pem (private, mode 0600) and DIR/jwks.json (public; the
    /// key is added to an existing set, replacing one with the same kid).
    Keygen {
        /// ES256, ES384, RS256, PS256 or EdDSA.
        #[arg(long)]
        alg: String,
        /// Key id; also the file name.
        #[arg(long)]
        kid: String,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// RSA key size: 2048 (default) or 3072.
        #[arg(long)]
        bits: Option<u32>,
    },
    /// Mint a signed token for development and tests, and print it.
    Token {
        /// PEM private key (PKCS#8, or SEC1 / PKCS#1).
        #[arg(long)]
        key: PathBuf,
        /// Key id for the header; defaults to the key file name without extension.
        #[arg(long)]
        kid: Option<String>,
        #[arg(long)]
        iss: String,
        #[arg(long)]
        aud: String,
        #[arg(long)]
        sub: String,
        /// Space-separated scopes.
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime (`30s`, `15m`, `24h`).
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// Extra claim `name=value`; the value is JSON if it parses, else a string. Repeatable;
        /// may override defaults such as `exp` or `iat`.
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
        /// Only for RSA keys: RS256 (default) or PS256.
        #[arg(long)]
        alg: Option<String>,
    },
    /// Read a password on stdin and print its argon2id PHC string.
    HashPassword,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    if let Some(tool) = cli.tool {
        return match run_tool(tool) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portcullis: {e}");
                ExitCode::from(1)
            }
        };
    }
    let Some(conf) = cli.pingora.conf.clone() else {
        eprintln!("portcullis: a config file is required (-c conf/portcullis.yaml)");
        return ExitCode::from(2);
    };
    let loaded = match portcullis::config::load(&PathBuf::from(&conf)) {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("{conf}: {} error(s):", errors.len());
            for e in &errors {
                eprintln!("  {e}");
            }
            return ExitCode::from(1);
        }
    };
    if cli.pingora.test {
        // Build the runtime state too (issuer key and user files, upstream peers), without
        // starting anything, so -t catches what a start would.
        let keep = portcullis::runtime::Persistent::default();
        if let Err(errors) = portcullis::runtime::Snapshot::build(&loaded, &keep) {
            eprintln!("{conf}: {} error(s):", errors.len());
            for e in &errors {
                eprintln!("  {e}");
            }
            return ExitCode::from(1);
        }
        println!("{conf}: configuration OK (hash {})", loaded.hash);
        return ExitCode::SUCCESS;
    }
    let mut opt = cli.pingora;
    // Our config file is not Pingora's YAML; Pingora gets its settings from the `server:` block.
    opt.conf = None;
    match portcullis::server::run(opt, &PathBuf::from(&conf), loaded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::from(1)
        }
    }
}

/// Why a tool failed; printed after `portcullis: `.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// A problem with the `--key` file, named in front of the message.
    #[error("{}: {source}", path.display())]
    KeyFile { path: PathBuf, source: ToolError },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--kid is required for this key file name")]
    NoKid,
    #[error("--ttl: {0}")]
    Ttl(portcullis::config::DurationError),
    #[error("stdin: {0}")]
    Stdin(std::io::Error),
}

fn run_tool(tool: Tool) -> Result<(), CliError> {
    match tool {
        Tool::Keygen {
            alg,
            kid,
            out,
            bits,
        } => {
            let written = tools::keygen(tools::parse_algorithm(&alg)?, &kid, &out, bits)?;
            eprintln!(
                "wrote {} and {}",
                written.private_key.display(),
                written.jwks.display()
            );
            Ok(())
        }
        Tool::Token {
            key,
            kid,
            iss,
            aud,
            sub,
            scope,
            ttl,
            claims,
            alg,
        } => {
            let pem = std::fs::read(&key).map_err(|source| CliError::Read {
                path: key.clone(),
                source,
            })?;
            let kid = match kid {
                Some(k) => k,
                None => key
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string)
                    .ok_or(CliError::NoKid)?,
            };
            let ttl = portcullis::config::parse_duration(&ttl).map_err(CliError::Ttl)?;
            let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
            let extra = claims
                .iter()
                .map(|c| tools::parse_claim_arg(c))
                .collect::<Result<Vec<_>, _>>()?;
            let alg = alg.as_deref().map(tools::parse_algorithm).transpose()?;
            let req = tools::MintRequest {
                kid: &kid,
                iss: &iss,
                aud: &aud,
                sub: &sub,
                scope: scope.as_deref(),
                ttl_secs,
                extra_claims: &extra,
                alg,
                now: portcullis::clock::unix_now(),
            };
            let token = tools::mint_token(&pem, &req)
                .map_err(|source| CliError::KeyFile { path: key, source })?;
            println!("{token}");
            Ok(())
        }
        Tool::HashPassword => {
            let mut input = Vec::new();
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                // Interactive: one line is the password (Enter ends it, no Ctrl-D needed).
                eprint!("Password: ");
                let mut line = String::new();
                stdin.read_line(&mut line).map_err(CliError::Stdin)?;
                input = line.into_bytes();
            } else {
                stdin
                    .lock()
                    .read_to_end(&mut input)
                    .map_err(CliError::Stdin)?;
            }
            let phc = tools::hash_password(tools::strip_one_newline(&input))?;
            println!("{phc}");
            Ok(())
        }
    }
}
