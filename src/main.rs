//! `portcullis`: run the gateway, or validate its config (SPEC §1).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pingora::server::configuration::Opt;

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
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
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
        println!("{conf}: configuration OK (hash {})", loaded.hash);
        return ExitCode::SUCCESS;
    }
    let mut opt = cli.pingora;
    // Our config file is not Pingora's YAML; Pingora gets its settings from the `server:` block.
    opt.conf = None;
    match portcullis::server::run(opt, loaded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::from(1)
        }
    }
}
