//! The users and clients files (conf/README.md §6): names, argon2id PHC hashes, scopes, a disabled flag.
//!
//! Each file also yields a *dummy* hash with the parameters most of its entries use, so a login
//! for a name that does not exist runs the same argon2 work as one that does, and the answer's
//! timing does not reveal which names exist.

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Params, PasswordHasher, ARGON2ID_IDENT};
use serde::Deserialize;

/// A hash whose parameters ask for more memory than this is refused at load: every login would
/// allocate it, which is an easy way to take the gateway down by mistake.
const MAX_M_COST_KIB: u32 = 256 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    username: String,
    password_hash: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    #[serde(default)]
    clients: Vec<ClientEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    client_id: String,
    secret_hash: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    disabled: bool,
}

/// One user or client.
#[derive(Debug, Clone)]
pub struct Account {
    /// The PHC string, kept as text: it is handed to a blocking thread per login.
    pub phc: String,
    pub scopes: Vec<String>,
    pub disabled: bool,
}

/// Everything one file says, plus the dummy hash that stands in for unknown names.
#[derive(Debug)]
pub struct Accounts {
    pub by_name: HashMap<String, Account>,
    pub dummy_phc: String,
}

/// Which file, for parsing and for error messages.
#[derive(Clone, Copy)]
pub enum Kind {
    Users,
    Clients,
}

impl Kind {
    /// Its config key, list name, name field and hash field, for error messages.
    fn names(self) -> [&'static str; 4] {
        match self {
            Kind::Users => ["issuer.users_file", "users", "username", "password_hash"],
            Kind::Clients => ["issuer.clients_file", "clients", "client_id", "secret_hash"],
        }
    }
}

/// Reads one file (`None`: no such file configured, so nobody can log in through it).
pub fn load(kind: Kind, path: Option<&Path>) -> Result<Accounts, Vec<String>> {
    let [key, list, name_field, hash_field] = kind.names();
    let entries = match path {
        None => Vec::new(),
        Some(p) => {
            let text =
                std::fs::read(p).map_err(|e| vec![format!("{key}: {}: {e}", p.display())])?;
            parse(kind, &text).map_err(|e| vec![format!("{key}: {e}")])?
        }
    };
    let mut errors = Vec::new();
    let mut by_name = HashMap::new();
    let mut params_seen: Vec<(Params, usize)> = Vec::new();
    for (i, (name, phc, scopes, disabled)) in entries.into_iter().enumerate() {
        let at = format!("{key}: {list}[{i}]");
        if name.is_empty() {
            errors.push(format!("{at}: {name_field}: must not be empty"));
            continue;
        }
        let at = format!("{at} ({name:?})");
        match check_phc(&phc) {
            Ok(params) => match params_seen.iter_mut().find(|(p, _)| *p == params) {
                Some((_, n)) => *n += 1,
                None => params_seen.push((params, 1)),
            },
            Err(e) => errors.push(format!("{at}: {hash_field}: {e}")),
        }
        for s in &scopes {
            if !is_scope_token(s) {
                errors.push(format!("{at}: scopes: invalid scope {s:?}"));
            }
        }
        if by_name.contains_key(&name) {
            errors.push(format!("{at}: {name_field}: duplicate"));
            continue;
        }
        by_name.insert(
            name,
            Account {
                phc,
                scopes,
                disabled,
            },
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // First-seen wins a tie, so the choice is stable across reloads of the same file.
    let mut common: Option<(Params, usize)> = None;
    for (p, n) in params_seen {
        if common.as_ref().is_none_or(|(_, best)| n > *best) {
            common = Some((p, n));
        }
    }
    let params = common.map(|(p, _)| p).unwrap_or_default();
    // Nobody knows this password: it only makes an unknown name cost what a known one does.
    let dummy_phc = hash_secret(&rand::random::<[u8; 32]>(), params)
        .map_err(|e| vec![format!("{key}: dummy hash: {e}")])?;
    Ok(Accounts { by_name, dummy_phc })
}

type Entry = (String, String, Vec<String>, bool);

/// A YAML error with its line in front, like a compiler's (serde_yaml appends
/// " at line L column C" instead).
#[derive(Debug, thiserror::Error)]
#[error("{}{message}", line.map_or(String::new(), |l| format!("line {l}: ")))]
struct SyntaxError {
    line: Option<usize>,
    message: String,
}

impl From<serde_yaml::Error> for SyntaxError {
    fn from(e: serde_yaml::Error) -> SyntaxError {
        let msg = e.to_string();
        let message = msg
            .rfind(" at line ")
            .map_or(msg.as_str(), |i| &msg[..i])
            .to_string();
        SyntaxError {
            line: e.location().map(|loc| loc.line()),
            message,
        }
    }
}

fn parse(kind: Kind, text: &[u8]) -> Result<Vec<Entry>, SyntaxError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    Ok(match kind {
        Kind::Users => serde_yaml::from_slice::<UsersFile>(text)?
            .users
            .into_iter()
            .map(|u| (u.username, u.password_hash, u.scopes, u.disabled))
            .collect(),
        Kind::Clients => serde_yaml::from_slice::<ClientsFile>(text)?
            .clients
            .into_iter()
            .map(|c| (c.client_id, c.secret_hash, c.scopes, c.disabled))
            .collect(),
    })
}

/// Why a stored hash is refused; printed after the entry's hash field.
#[derive(Debug, thiserror::Error)]
enum PhcError {
    #[error("not a PHC string ({0})")]
    Syntax(argon2::password_hash::Error),
    #[error("algorithm {0} is not argon2id (use `portcullis hash-password`)")]
    NotArgon2id(String),
    #[error("PHC string has no salt or no hash")]
    Incomplete,
    #[error("bad argon2 parameters ({0})")]
    Params(argon2::password_hash::Error),
    #[error("m={0} KiB is above the {MAX_M_COST_KIB} KiB limit")]
    TooMuchMemory(u32),
}

/// Accepts an argon2id PHC string and returns its parameters.
fn check_phc(phc: &str) -> Result<Params, PhcError> {
    let hash = PasswordHash::new(phc).map_err(PhcError::Syntax)?;
    if hash.algorithm != ARGON2ID_IDENT {
        return Err(PhcError::NotArgon2id(hash.algorithm.to_string()));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(PhcError::Incomplete);
    }
    let params = Params::try_from(&hash).map_err(PhcError::Params)?;
    if params.m_cost() > MAX_M_COST_KIB {
        return Err(PhcError::TooMuchMemory(params.m_cost()));
    }
    Ok(params)
}

/// An argon2id PHC string of `secret` with a random salt: the format this module accepts, so
/// `portcullis hash-password` produces it through here too.
pub fn hash_secret(secret: &[u8], params: Params) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(secret, &salt)
        .map(|h| h.to_string())
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}
