//! Durable storage behind the revocation list (SPEC §2 `revocation`, §4).
//!
//! The in-memory list answers every request; a store only has to make an admin change survive a
//! restart. So the store is a write-ahead log and little more: [`RevocationStore::append`] makes
//! one change durable before the admin API answers 201, [`RevocationStore::load_and_compact`]
//! runs at start to rebuild the live state and shrink the storage to it, and
//! [`RevocationStore::read_new`] hands over what was appended since, by this process or another.
//!
//! Another process shares the log during a graceful upgrade (SPEC §1 `-u`): the old process
//! keeps answering admin requests for seconds after the new one has started and compacted the
//! log. Three rules keep every acknowledged change: appends and the compaction hold the log's
//! sidecar lock (`<path>.lock`, flock(2)), so the compaction's read-rewrite-rename never
//! overtakes an append; an append always goes to the file currently at the path, whoever
//! renamed it; and each process follows the log ([`RevocationStore::read_new`]) to apply what
//! the other acknowledged.
//!
//! The file store is a JSON-lines log (one [`Record`] per `'\n'`-terminated line). Appends are
//! `write_all` + `sync_data` under a mutex: a revocation is either fully on disk or reported as an
//! error. Replay is forgiving because a log that stops the gateway from starting is worse than one
//! that loses a line it never acknowledged: a torn last line (no `'\n'`, i.e. a write that never
//! reached its fsync) is skipped with a warning, and any other bad line is skipped with a warning
//! naming its line number while every valid line is kept.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One change to the revocation list, as stored (one JSON object per line, tagged by `op`).
///
/// Times are seconds since the epoch. `expires_at: None` means "kept until deleted".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    /// The token `(iss, jti)` is revoked; the entry is useless after the token's `exp` + leeway.
    RevokeJti {
        iss: String,
        jti: String,
        expires_at: Option<i64>,
    },
    /// Every token of `(iss, sub)` with `iat < before` is revoked.
    RevokeSubject {
        iss: String,
        sub: String,
        before: i64,
        expires_at: Option<i64>,
    },
    /// Undoes a [`Record::RevokeJti`].
    DeleteJti { iss: String, jti: String },
    /// Undoes a [`Record::RevokeSubject`].
    DeleteSubject { iss: String, sub: String },
}

/// The live state found at start, and what was wrong with the storage.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Only `RevokeJti` / `RevokeSubject`, after deletions, merges and expiry at `now`, in the order
    /// their entries first appeared.
    pub records: Vec<Record>,
    /// Human-readable, one per problem, e.g. `"line 17: invalid record (...), skipped"`. Never
    /// contains the content of a bad line (it could be anything, even a token).
    pub warnings: Vec<String>,
}

/// Records appended to the log since the previous read, in log order.
#[derive(Debug, Default)]
pub struct NewRecords {
    /// Every valid record, deletions included, exactly as appended (not merged or filtered).
    pub records: Vec<Record>,
    /// One per bad line, as in [`Loaded::warnings`].
    pub warnings: Vec<String>,
}

/// Durable backing of the revocation list.
pub trait RevocationStore: Send + Sync {
    /// Returns only once the record is durable (file: written and fsync'd). Blocking; callers run
    /// it on a blocking thread.
    fn append(&self, record: &Record) -> io::Result<()>;
    /// Called once at start (the new process of a graceful upgrade included): read everything,
    /// return the live state, and compact the backing storage to exactly that state.
    fn load_and_compact(&self, now: i64) -> Result<Loaded, String>;
    /// What was appended since the load or the previous call. Blocking. Records this process
    /// appended come back too: applying them again, in log order, ends in the same state.
    fn read_new(&self) -> Result<NewRecords, String>;
    /// The `revocation.store` value this implements.
    fn name(&self) -> &'static str;
}

/// `store: memory`: revocations live only as long as the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

impl RevocationStore for MemoryStore {
    fn append(&self, _record: &Record) -> io::Result<()> {
        Ok(())
    }

    fn load_and_compact(&self, _now: i64) -> Result<Loaded, String> {
        Ok(Loaded::default())
    }

    fn read_new(&self) -> Result<NewRecords, String> {
        Ok(NewRecords::default())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// Longest line replay will buffer. A record is far smaller (admin bodies are capped at 64 KiB);
/// the cap only stops a corrupt file without newlines from being read into memory whole.
const MAX_LINE_BYTES: u64 = 1 << 20;

/// Warnings kept per load or per read of new records; the rest are counted in one summary line so
/// a log full of garbage cannot flood the log.
const MAX_WARNINGS: usize = 100;

/// Tries per append when the log is replaced under it. A compaction takes far longer than an
/// append, so running out means something keeps replacing the file, and the append fails.
const MAX_APPEND_ATTEMPTS: usize = 3;

/// `store: file`: an append-only JSON-lines log, compacted at every start.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    /// `<path>.lock`, flock'ed around each append and around a compaction. A separate file,
    /// because the log itself is replaced by every compaction. The kernel releases it when a
    /// holder dies, so a crash never leaves the log locked.
    lock: File,
    appender: Mutex<Appender>,
    follower: Mutex<Follower>,
}

/// Which file a handle or the path names. A compaction renames a new file over the path, so the
/// path can name another file from one moment to the next; device and inode tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

#[derive(Debug)]
struct Appender {
    file: File,
    id: FileId,
}

/// How far [`RevocationStore::read_new`] has read.
#[derive(Debug, Default)]
struct Follower {
    /// The file `offset` counts in (`None` before the load). Another file at the path is new from
    /// its first byte.
    file: Option<FileId>,
    /// Just past the last complete line read.
    offset: u64,
}

impl FileStore {
    /// Opens (creating if missing) the log at `path`: parent directories with mode 0700, the file
    /// with mode 0600, since revocations name subjects and token ids.
    pub fn open(path: &Path) -> Result<FileStore, String> {
        let dir = parent_dir(path);
        create_private_dirs(dir).map_err(|e| {
            format!(
                "revocation log {}: cannot create directory {}: {e}",
                path.display(),
                dir.display()
            )
        })?;
        let appender = open_appender(path)
            .map_err(|e| format!("revocation log {}: cannot open: {e}", path.display()))?;
        let lock_path = sidecar(path, ".lock");
        let lock = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| {
                format!(
                    "revocation log {}: cannot open {}: {e}",
                    path.display(),
                    lock_path.display()
                )
            })?;
        Ok(FileStore {
            path: path.to_path_buf(),
            lock,
            appender: Mutex::new(appender),
            follower: Mutex::new(Follower::default()),
        })
    }

    /// The log's path, for status and error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tmp_path(&self) -> PathBuf {
        sidecar(&self.path, ".tmp")
    }

    /// Waits for the sidecar lock, which another process holds while it appends or compacts.
    /// Take it after `appender`'s mutex, never before.
    fn exclusive(&self) -> io::Result<LogLock<'_>> {
        self.lock.lock().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot lock {}: {e}",
                    sidecar(&self.path, ".lock").display()
                ),
            )
        })?;
        Ok(LogLock(&self.lock))
    }

    /// The file now at the path; `None` if there is none (the next append creates it).
    fn current_file(&self) -> io::Result<Option<FileId>> {
        match fs::metadata(&self.path) {
            Ok(meta) => Ok(Some(FileId::of(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot stat {}: {e}", self.path.display()),
            )),
        }
    }

    /// Reads the whole log: which file it was, and what it holds.
    fn read_all(&self, now: i64) -> Result<(FileId, Replayed), String> {
        let cannot_read =
            |e: io::Error| format!("revocation log {}: cannot read: {e}", self.path.display());
        let file = File::open(&self.path).map_err(cannot_read)?;
        let id = file
            .metadata()
            .map(|m| FileId::of(&m))
            .map_err(cannot_read)?;
        let replayed = replay(BufReader::with_capacity(1 << 16, file), now).map_err(cannot_read)?;
        Ok((id, replayed))
    }

    /// Replaces the log by one holding exactly `records`: write `<path>.tmp`, fsync it, rename it
    /// over the log, point `appender` at the new file, fsync the directory. A crash at any point
    /// leaves either the old log or the new one, and both replay to the same state. Returns the
    /// new file and its length.
    fn rewrite(&self, records: &[Record], appender: &mut Appender) -> io::Result<(FileId, u64)> {
        let tmp = self.tmp_path();
        let written = match write_synced(&tmp, records) {
            Ok(written) => written,
            Err(e) => {
                // Best effort: the next start removes a leftover anyway.
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fs::rename(&tmp, &self.path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot rename {} to {}: {e}",
                    tmp.display(),
                    self.path.display()
                ),
            )
        })?;
        // The old handle now points at an unlinked file; appends must go to the new one.
        *appender = open_appender(&self.path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot reopen after the rename: {e}"))
        })?;
        File::open(parent_dir(&self.path))
            .and_then(|d| d.sync_all())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot fsync the directory: {e}")))?;
        Ok(written)
    }
}

/// Holds the sidecar lock until dropped.
struct LogLock<'a>(&'a File);

impl Drop for LogLock<'_> {
    fn drop(&mut self) {
        // Cannot fail for a held lock on an open file; if it did, closing the file at exit
        // releases it anyway.
        let _ = self.0.unlock();
    }
}

/// `<path><suffix>`, next to the log.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `records` as a new file at `tmp` (mode 0600) and fsyncs it. Returns the file and its
/// length, taken before the rename, when nothing else can have written to it.
fn write_synced(tmp: &Path, records: &[Record]) -> io::Result<(FileId, u64)> {
    // A leftover from a crashed compaction is removed rather than truncated, so `create_new`
    // never follows a link planted at that name.
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot remove {}: {e}", tmp.display()),
            ))
        }
        _ => {}
    }
    let file = private_options()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", tmp.display())))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    for record in records {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
    }
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    let meta = file.metadata()?;
    Ok((FileId::of(&meta), meta.len()))
}

impl RevocationStore for FileStore {
    fn append(&self, record: &Record) -> io::Result<()> {
        let mut line = Vec::with_capacity(128);
        serde_json::to_writer(&mut line, record)?;
        line.push(b'\n');
        let mut appender = self.appender.lock();
        let _no_compaction = self.exclusive()?;
        for _ in 0..MAX_APPEND_ATTEMPTS {
            // A newer process may have compacted since; its file is the one every later start
            // reads, and an append to the unlinked one would be acknowledged and lost.
            if self.current_file()? != Some(appender.id) {
                *appender = open_appender(&self.path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot reopen {}: {e}", self.path.display()),
                    )
                })?;
            }
            appender.write_line(&line)?;
            // Replaced between the check and the fsync, the record may be only in the unlinked
            // file: write it again. A record twice in the log replays to the same state.
            if self.current_file()? == Some(appender.id) {
                return Ok(());
            }
        }
        Err(io::Error::other(format!(
            "{} was replaced during each of {MAX_APPEND_ATTEMPTS} attempts to append",
            self.path.display()
        )))
    }

    fn load_and_compact(&self, now: i64) -> Result<Loaded, String> {
        // Both held throughout, so no append of this process or of another can land in the
        // file about to be replaced after it was read.
        let mut appender = self.appender.lock();
        let _no_appends = self.exclusive().map_err(|e| {
            format!(
                "revocation log {}: cannot compact: {e}",
                self.path.display()
            )
        })?;
        let (_, replayed) = self.read_all(now)?;
        let (file, len) = self
            .rewrite(&replayed.records, &mut appender)
            .map_err(|e| {
                format!(
                    "revocation log {}: cannot compact: {e}",
                    self.path.display()
                )
            })?;
        *self.follower.lock() = Follower {
            file: Some(file),
            offset: len,
        };
        Ok(Loaded {
            records: replayed.records,
            warnings: replayed.warnings,
        })
    }

    fn read_new(&self) -> Result<NewRecords, String> {
        let cannot_read =
            |e: io::Error| format!("revocation log {}: cannot read: {e}", self.path.display());
        let mut follower = self.follower.lock();
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            // Removed by hand: nothing to read until an append creates it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(NewRecords::default()),
            Err(e) => return Err(cannot_read(e)),
        };
        let meta = file.metadata().map_err(cannot_read)?;
        let id = FileId::of(&meta);
        if follower.file != Some(id) || meta.len() < follower.offset {
            // Compacted by another process (or truncated by hand): all of it is new here.
            *follower = Follower {
                file: Some(id),
                offset: 0,
            };
        }
        if meta.len() == follower.offset {
            return Ok(NewRecords::default());
        }
        file.seek(SeekFrom::Start(follower.offset))
            .map_err(cannot_read)?;
        let (new, complete) =
            read_records(BufReader::new(file), follower.offset).map_err(cannot_read)?;
        follower.offset += complete;
        Ok(new)
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

impl Appender {
    /// Writes one `'\n'`-terminated line and fsyncs it.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        // Checked on every append, since another process may have written since: a fragment left
        // by a write that failed or never reached its fsync gets a newline first, so it stays a
        // bad line of its own instead of corrupting the acknowledged record written after it.
        if ends_mid_line(&self.file)? {
            let mut fresh = Vec::with_capacity(line.len() + 1);
            fresh.push(b'\n');
            fresh.extend_from_slice(line);
            self.file.write_all(&fresh)?;
        } else {
            self.file.write_all(line)?;
        }
        self.file.sync_data()
    }
}

/// `Path::parent` is `""` for a bare file name; that means the current directory.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn create_private_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn open_appender(path: &Path) -> io::Result<Appender> {
    // Readable too, for `ends_mid_line`; O_APPEND writes go to the end whatever else happens.
    let file = private_options()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let id = FileId::of(&file.metadata()?);
    Ok(Appender { file, id })
}

/// Whether the file's last byte is not `'\n'`.
fn ends_mid_line(file: &File) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] != b'\n')
}

/// One step through the log.
enum Next {
    /// A `'\n'`-terminated line of this many bytes is in the buffer.
    Line(u64),
    /// A line longer than [`MAX_LINE_BYTES`] (this many bytes with its `'\n'`) was skipped.
    TooLong(u64),
    /// The file ends inside a line.
    Torn,
    End,
}

fn next_line<R: BufRead>(reader: &mut R, line: &mut Vec<u8>) -> io::Result<Next> {
    line.clear();
    let n = (&mut *reader)
        .take(MAX_LINE_BYTES + 1)
        .read_until(b'\n', line)? as u64;
    if n == 0 {
        return Ok(Next::End);
    }
    if line.last() == Some(&b'\n') {
        return Ok(Next::Line(n));
    }
    if n > MAX_LINE_BYTES {
        if let Some(rest) = skip_line(reader)? {
            return Ok(Next::TooLong(n + rest));
        }
    }
    Ok(Next::Torn)
}

/// A whole log read at start.
struct Replayed {
    records: Vec<Record>,
    warnings: Vec<String>,
}

/// Reads a whole log and returns its live state at `now` plus warnings. Only an I/O error fails.
fn replay<R: BufRead>(mut reader: R, now: i64) -> io::Result<Replayed> {
    let mut live = LiveState::default();
    let mut warnings = Warnings::default();
    let mut line = Vec::with_capacity(256);
    let mut line_no: u64 = 0;
    loop {
        let next = next_line(&mut reader, &mut line)?;
        line_no += 1;
        match next {
            Next::End => break,
            Next::Torn => {
                // EOF without a newline: the write never reached its fsync, so it was never
                // acknowledged. (Not one still in flight: appends wait for the log's lock.)
                warnings.push(format!("line {line_no}: torn last line skipped"));
                break;
            }
            Next::TooLong(_) => {
                warnings.push(format!(
                    "line {line_no}: longer than {MAX_LINE_BYTES} bytes, skipped"
                ));
            }
            Next::Line(_) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let applied = Line::parse(&line).and_then(|parsed| live.apply(parsed));
                if let Err(problem) = applied {
                    warnings.push(format!(
                        "line {line_no}: invalid record ({problem}), skipped"
                    ));
                }
            }
        }
    }
    Ok(Replayed {
        records: live.into_records(now),
        warnings: warnings.finish(),
    })
}

/// Reads the complete lines from `start` (the reader's position in the file) to the end, as
/// records in log order. Returns them and how many bytes they span; a torn last line is left for
/// the next read, when the append in flight has finished. Only an I/O error fails.
fn read_records<R: BufRead>(mut reader: R, start: u64) -> io::Result<(NewRecords, u64)> {
    let mut records = Vec::new();
    let mut warnings = Warnings::default();
    let mut line = Vec::with_capacity(256);
    let mut complete: u64 = 0;
    loop {
        let at = start + complete;
        match next_line(&mut reader, &mut line)? {
            Next::End | Next::Torn => break,
            Next::TooLong(n) => {
                complete += n;
                warnings.push(format!(
                    "byte {at}: line longer than {MAX_LINE_BYTES} bytes, skipped"
                ));
            }
            Next::Line(n) => {
                complete += n;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<Record>(&line) {
                    Ok(record) => records.push(record),
                    Err(e) => warnings.push(format!(
                        "byte {at}: invalid record ({}), skipped",
                        describe_json_error(&e)
                    )),
                }
            }
        }
    }
    let new = NewRecords {
        records,
        warnings: warnings.finish(),
    };
    Ok((new, complete))
}

/// Discards the rest of an over-long line without buffering it. Returns how many bytes that was
/// with its `'\n'`, or `None` if the file ended first.
fn skip_line<R: BufRead>(reader: &mut R) -> io::Result<Option<u64>> {
    let mut skipped: u64 = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            reader.consume(i + 1);
            return Ok(Some(skipped + i as u64 + 1));
        }
        let len = buf.len();
        reader.consume(len);
        skipped += len as u64;
    }
}

/// serde_json's message without its "at line 1 column N" (always line 1 here: one record per
/// line), so the warning carries only the file's line number.
fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    format!("{message} at column {}", e.column())
}

#[derive(Default)]
struct Warnings {
    kept: Vec<String>,
    dropped: usize,
}

impl Warnings {
    fn push(&mut self, warning: String) {
        if self.kept.len() < MAX_WARNINGS {
            self.kept.push(warning);
        } else {
            self.dropped += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.kept
                .push(format!("{} more bad lines skipped", self.dropped));
        }
        self.kept
    }
}

/// The replay fold: what is revoked after applying records in order.
///
/// A log holds a handful of issuers and up to millions of ids, so issuers are interned: a key is
/// `(issuer number, id)`, one allocation per entry, and that allocation becomes the output
/// record's `jti`/`sub` without a copy.
#[derive(Default)]
struct LiveState {
    jtis: HashMap<(u32, Box<str>), JtiEntry>,
    subjects: HashMap<(u32, Box<str>), SubjectEntry>,
    issuers: Vec<String>,
    issuer_ids: HashMap<String, u32>,
    last_issuer: Option<(u32, String)>,
    /// Order of first appearance, so a compacted log keeps the original order.
    next_seq: u64,
}

struct JtiEntry {
    seq: u64,
    expires_at: Option<i64>,
}

struct SubjectEntry {
    seq: u64,
    before: i64,
    expires_at: Option<i64>,
}

impl LiveState {
    fn issuer(&mut self, iss: &str) -> Result<u32, String> {
        // Consecutive lines almost always share an issuer: compare before hashing.
        if let Some(&(id, ref last)) = self.last_issuer.as_ref() {
            if last == iss {
                return Ok(id);
            }
        }
        let id = self.intern(iss)?;
        self.last_issuer = Some((id, iss.to_owned()));
        Ok(id)
    }

    fn intern(&mut self, iss: &str) -> Result<u32, String> {
        if let Some(&id) = self.issuer_ids.get(iss) {
            return Ok(id);
        }
        let id = u32::try_from(self.issuers.len()).map_err(|_| "too many issuers".to_string())?;
        self.issuers.push(iss.to_owned());
        self.issuer_ids.insert(iss.to_owned(), id);
        Ok(id)
    }

    fn apply(&mut self, line: Line<'_>) -> Result<(), String> {
        let iss = self.issuer(&line.iss.0)?;
        let seq = self.next_seq;
        match line.op {
            Op::RevokeJti => {
                let key = (iss, required("jti", line.jti)?);
                match self.jtis.entry(key) {
                    Entry::Occupied(mut e) => {
                        let entry = e.get_mut();
                        entry.expires_at = later_expiry(entry.expires_at, line.expires_at);
                    }
                    Entry::Vacant(e) => {
                        e.insert(JtiEntry {
                            seq,
                            expires_at: line.expires_at,
                        });
                        self.next_seq += 1;
                    }
                }
            }
            Op::RevokeSubject => {
                let key = (iss, required("sub", line.sub)?);
                let before = line.before.ok_or("missing field `before`")?;
                match self.subjects.entry(key) {
                    Entry::Occupied(mut e) => {
                        let entry = e.get_mut();
                        entry.before = entry.before.max(before);
                        entry.expires_at = later_expiry(entry.expires_at, line.expires_at);
                    }
                    Entry::Vacant(e) => {
                        e.insert(SubjectEntry {
                            seq,
                            before,
                            expires_at: line.expires_at,
                        });
                        self.next_seq += 1;
                    }
                }
            }
            Op::DeleteJti => {
                self.jtis.remove(&(iss, required("jti", line.jti)?));
            }
            Op::DeleteSubject => {
                self.subjects.remove(&(iss, required("sub", line.sub)?));
            }
        }
        Ok(())
    }

    /// Drops entries with `expires_at < now` and returns the rest in order of first appearance.
    fn into_records(self, now: i64) -> Vec<Record> {
        let alive = |expires_at: Option<i64>| expires_at.is_none_or(|t| t >= now);
        let issuers = &self.issuers;
        let issuer = |id: u32| issuers.get(id as usize).cloned().unwrap_or_default();
        let mut ordered: Vec<(u64, Record)> =
            Vec::with_capacity(self.jtis.len() + self.subjects.len());
        ordered.extend(
            self.jtis
                .into_iter()
                .filter(|(_, e)| alive(e.expires_at))
                .map(|((iss, jti), e)| {
                    let record = Record::RevokeJti {
                        iss: issuer(iss),
                        jti: jti.into_string(),
                        expires_at: e.expires_at,
                    };
                    (e.seq, record)
                }),
        );
        ordered.extend(
            self.subjects
                .into_iter()
                .filter(|(_, e)| alive(e.expires_at))
                .map(|((iss, sub), e)| {
                    let record = Record::RevokeSubject {
                        iss: issuer(iss),
                        sub: sub.into_string(),
                        before: e.before,
                        expires_at: e.expires_at,
                    };
                    (e.seq, record)
                }),
        );
        ordered.sort_unstable_by_key(|(seq, _)| *seq);
        ordered.into_iter().map(|(_, record)| record).collect()
    }
}

fn required(field: &str, value: Option<Text<'_>>) -> Result<Box<str>, String> {
    match value {
        Some(Text(Cow::Borrowed(s))) => Ok(s.into()),
        Some(Text(Cow::Owned(s))) => Ok(s.into_boxed_str()),
        None => Err(format!("missing field `{field}`")),
    }
}

/// One log line as replay reads it: [`Record`]'s fields flattened, strings borrowed from the line
/// when they have no escapes. serde's internally tagged enums buffer every field into an owned
/// intermediate value first, which doubled the parse time; this form reads each field once.
/// Which fields an `op` requires is checked in [`LiveState::apply`]; unknown fields are ignored,
/// as the derived `Record` does. `both_readers_agree` in the tests keeps the two in step.
#[derive(Deserialize)]
struct Line<'a> {
    op: Op,
    #[serde(borrow)]
    iss: Text<'a>,
    #[serde(borrow, default)]
    jti: Option<Text<'a>>,
    #[serde(borrow, default)]
    sub: Option<Text<'a>>,
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    expires_at: Option<i64>,
}

impl<'a> Line<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Line<'a>, String> {
        // A derived struct also accepts a JSON array of its fields in order; `Record` does not.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err("not a JSON object".to_string());
        }
        serde_json::from_slice(bytes).map_err(|e| describe_json_error(&e))
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Op {
    RevokeJti,
    RevokeSubject,
    DeleteJti,
    DeleteSubject,
}

/// A JSON string borrowed from the input when it has no escapes, owned otherwise. (serde's own
/// `Cow<str>` impl always copies unless it is a direct struct field, not inside an `Option`.)
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Two revocations of the same key merge to the one that lasts longer; `None` (until deleted)
/// outlasts any time. Keeping the longer one can only keep a token revoked, never un-revoke it.
fn later_expiry(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new() -> TempDir {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "portcullis-revstore-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn log(&self) -> PathBuf {
            self.0.join("data").join("revocations.jsonl")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn jti(iss: &str, jti: &str, expires_at: Option<i64>) -> Record {
        Record::RevokeJti {
            iss: iss.into(),
            jti: jti.into(),
            expires_at,
        }
    }

    fn subject(iss: &str, sub: &str, before: i64, expires_at: Option<i64>) -> Record {
        Record::RevokeSubject {
            iss: iss.into(),
            sub: sub.into(),
            before,
            expires_at,
        }
    }

    fn line(record: &Record) -> String {
        let mut s = serde_json::to_string(record).unwrap();
        s.push('\n');
        s
    }

    /// Opens a fresh store on `path` and loads it, as a restart would.
    fn restart(path: &Path, now: i64) -> (FileStore, Loaded) {
        let store = FileStore::open(path).unwrap();
        let loaded = store.load_and_compact(now).unwrap();
        (store, loaded)
    }

    fn file_records(path: &Path) -> Vec<Record> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn wire_format_is_tagged_by_op() {
        assert_eq!(
            serde_json::to_string(&jti("I", "J", Some(5))).unwrap(),
            r#"{"op":"revoke_jti","iss":"I","jti":"J","expires_at":5}"#
        );
        let parsed: Record =
            serde_json::from_str(r#"{"op":"delete_subject","iss":"I","sub":"S"}"#).unwrap();
        assert_eq!(
            parsed,
            Record::DeleteSubject {
                iss: "I".into(),
                sub: "S".into()
            }
        );
        // A missing expires_at reads as "until deleted".
        let parsed: Record =
            serde_json::from_str(r#"{"op":"revoke_subject","iss":"I","sub":"S","before":7}"#)
                .unwrap();
        assert_eq!(parsed, subject("I", "S", 7, None));
    }

    /// Replay reads lines with its own flat `Line` form for speed; it must accept exactly what
    /// the derived `Record` accepts for every op, and reject what it rejects.
    #[test]
    fn both_readers_agree() {
        let revocations = [
            jti("I", "plain", Some(5)),
            jti("I", "esc\"aped\u{1}\\", None),
            subject("I\n", "s", -3, Some(i64::MAX)),
            subject("I", "s2", 9, None),
        ];
        for record in &revocations {
            let text = serde_json::to_string(record).unwrap();
            let mut live = LiveState::default();
            live.apply(Line::parse(text.as_bytes()).unwrap()).unwrap();
            assert_eq!(live.into_records(0), vec![record.clone()], "{text}");
        }
        let deletions = [
            r#"{"op":"delete_jti","iss":"I","jti":"plain"}"#,
            r#"{"op":"delete_subject","iss":"I\n","sub":"s"}"#,
        ];
        let mut live = LiveState::default();
        for text in revocations
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .chain(deletions.iter().map(|d| d.to_string()))
        {
            serde_json::from_str::<Record>(&text).unwrap();
            live.apply(Line::parse(text.as_bytes()).unwrap()).unwrap();
        }
        assert_eq!(
            live.into_records(0),
            vec![revocations[1].clone(), revocations[3].clone()]
        );

        let rejected = [
            r#"{"op":"revoke_jti","iss":"I"}"#,
            r#"{"op":"revoke_subject","iss":"I","sub":"s"}"#,
            r#"{"op":"revoke_subject","iss":"I","before":1}"#,
            r#"{"op":"delete_jti","iss":"I"}"#,
            r#"{"op":"delete_subject","iss":"I"}"#,
            r#"{"op":"revoke_jti","jti":"j"}"#,
            r#"{"iss":"I","jti":"j"}"#,
            r#"{"op":"revoke_everything","iss":"I","jti":"j"}"#,
            r#"{"op":"revoke_jti","iss":"I","jti":7}"#,
            r#"{"op":"revoke_jti","iss":"I","jti":"j","expires_at":"soon"}"#,
            r#"{"op":"revoke_subject","iss":"I","sub":"s","before":1.5}"#,
            r#"["revoke_jti","I","j"]"#,
        ];
        for text in rejected {
            assert!(serde_json::from_str::<Record>(text).is_err(), "{text}");
            let applied = Line::parse(text.as_bytes()).and_then(|l| LiveState::default().apply(l));
            assert!(applied.is_err(), "{text}");
        }

        // Unknown fields are ignored by both (room for a later version to add some).
        let extra = r#"{"op":"revoke_jti","iss":"I","jti":"j","expires_at":null,"reason":"x"}"#;
        let record: Record = serde_json::from_str(extra).unwrap();
        let mut live = LiveState::default();
        live.apply(Line::parse(extra.as_bytes()).unwrap()).unwrap();
        assert_eq!(live.into_records(0), vec![record]);
    }

    #[test]
    fn append_then_reload_round_trips() {
        let dir = TempDir::new();
        let path = dir.log();
        let (store, loaded) = restart(&path, 100);
        assert!(loaded.records.is_empty() && loaded.warnings.is_empty());
        assert_eq!(store.name(), "file");
        let written = vec![
            jti("https://a", "j1", Some(200)),
            subject("https://a", "alice", 90, None),
            jti("https://b", "j\"2\n", None),
        ];
        for r in &written {
            store.append(r).unwrap();
        }
        drop(store);
        let (_, loaded) = restart(&path, 100);
        assert_eq!(loaded.records, written);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn deletions_remove_and_later_revocations_come_back() {
        let dir = TempDir::new();
        let path = dir.log();
        let (store, _) = restart(&path, 0);
        store.append(&jti("I", "j1", None)).unwrap();
        store.append(&jti("I", "j2", None)).unwrap();
        store.append(&subject("I", "s1", 10, None)).unwrap();
        store.append(&subject("I", "s2", 10, None)).unwrap();
        store
            .append(&Record::DeleteJti {
                iss: "I".into(),
                jti: "j1".into(),
            })
            .unwrap();
        store
            .append(&Record::DeleteSubject {
                iss: "I".into(),
                sub: "s1".into(),
            })
            .unwrap();
        // Deleting something never revoked, or for another issuer, is harmless.
        store
            .append(&Record::DeleteJti {
                iss: "other".into(),
                jti: "j2".into(),
            })
            .unwrap();
        // Revoked again after its deletion: live again, ordered by its new appearance.
        store.append(&jti("I", "j1", Some(50))).unwrap();
        drop(store);
        let (_, loaded) = restart(&path, 0);
        assert_eq!(
            loaded.records,
            vec![
                jti("I", "j2", None),
                subject("I", "s2", 10, None),
                jti("I", "j1", Some(50)),
            ]
        );
    }

    #[test]
    fn expired_entries_are_dropped_at_load() {
        let dir = TempDir::new();
        let path = dir.log();
        let (store, _) = restart(&path, 0);
        store.append(&jti("I", "old", Some(99))).unwrap();
        store.append(&jti("I", "edge", Some(100))).unwrap();
        store.append(&jti("I", "forever", None)).unwrap();
        store.append(&subject("I", "old", 1, Some(50))).unwrap();
        store.append(&subject("I", "new", 1, Some(150))).unwrap();
        drop(store);
        let (_, loaded) = restart(&path, 100);
        assert_eq!(
            loaded.records,
            vec![
                jti("I", "edge", Some(100)),
                jti("I", "forever", None),
                subject("I", "new", 1, Some(150)),
            ]
        );
        // Compaction removed them from the file too.
        assert_eq!(file_records(&path), loaded.records);
    }

    #[test]
    fn subject_cutoffs_merge_to_the_larger_before_and_later_expiry() {
        let dir = TempDir::new();
        let path = dir.log();
        let (store, _) = restart(&path, 0);
        store.append(&subject("I", "a", 100, Some(1000))).unwrap();
        store.append(&subject("I", "a", 50, Some(2000))).unwrap();
        store.append(&subject("I", "b", 10, None)).unwrap();
        store.append(&subject("I", "b", 20, Some(30))).unwrap();
        store.append(&subject("other", "a", 5, Some(5))).unwrap();
        store.append(&jti("I", "j", Some(10))).unwrap();
        store.append(&jti("I", "j", Some(5))).unwrap();
        drop(store);
        let (_, loaded) = restart(&path, 0);
        assert_eq!(
            loaded.records,
            vec![
                subject("I", "a", 100, Some(2000)),
                subject("I", "b", 20, None),
                subject("other", "a", 5, Some(5)),
                jti("I", "j", Some(10)),
            ]
        );
    }

    #[test]
    fn torn_last_line_is_skipped_and_the_log_is_clean_afterwards() {
        let dir = TempDir::new();
        let path = dir.log();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let whole = [jti("I", "j1", None), subject("I", "s", 5, None)];
        let torn = line(&jti("I", "j3", None));
        let content = format!(
            "{}{}{}",
            line(&whole[0]),
            line(&whole[1]),
            &torn[..torn.len() / 2]
        );
        fs::write(&path, content).unwrap();

        let (store, loaded) = restart(&path, 0);
        assert_eq!(loaded.records, whole);
        assert_eq!(loaded.warnings, vec!["line 3: torn last line skipped"]);
        let clean = format!("{}{}", line(&whole[0]), line(&whole[1]));
        assert_eq!(fs::read_to_string(&path).unwrap(), clean);

        store.append(&jti("I", "j4", None)).unwrap();
        drop(store);
        let (_, loaded) = restart(&path, 0);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.records.len(), 3);
        assert_eq!(loaded.records[2], jti("I", "j4", None));
    }

    #[test]
    fn complete_json_without_newline_is_still_torn() {
        // The newline is part of the write that the fsync acknowledges; without it the append
        // never returned Ok.
        let dir = TempDir::new();
        let path = dir.log();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let last = line(&jti("I", "j2", None));
        fs::write(
            &path,
            format!("{}{}", line(&jti("I", "j1", None)), last.trim_end()),
        )
        .unwrap();
        let (_, loaded) = restart(&path, 0);
        assert_eq!(loaded.records, vec![jti("I", "j1", None)]);
        assert_eq!(loaded.warnings, vec!["line 2: torn last line skipped"]);
    }

    #[test]
    fn appending_after_a_torn_tail_without_loading_keeps_the_new_record() {
        let dir = TempDir::new();
        let path = dir.log();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            format!("{}{{\"op\":\"rev", line(&jti("I", "j1", None))),
        )
        .unwrap();
        let store = FileStore::open(&path).unwrap();
        store.append(&jti("I", "j2", None)).unwrap();
        drop(store);
        let (_, loaded) = restart(&path, 0);
        assert_eq!(
            loaded.records,
            vec![jti("I", "j1", None), jti("I", "j2", None)]
        );
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].starts_with("line 2: invalid record ("));
    }

    #[test]
    fn bad_lines_in_the_middle_are_reported_by_line_number() {
        let dir = TempDir::new();
        let path = dir.log();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let content = [
            line(&jti("I", "j1", None)).into_bytes(),
            b"this is not json\n".to_vec(),
            line(&jti("I", "j2", None)).into_bytes(),
            b"\n".to_vec(),
            b"{\"op\":\"revoke_jti\",\"iss\":\"I\"}\n".to_vec(),
            b"{\"op\":\"explode\",\"iss\":\"I\"}\n".to_vec(),
            // A well-formed record except for invalid UTF-8 in a string.
            b"{\"op\":\"revoke_jti\",\"iss\":\"I\",\"jti\":\"\xff\xfe\"}\n".to_vec(),
            line(&subject("I", "s", 3, None)).into_bytes(),
        ]
        .concat();
        fs::write(&path, content).unwrap();
        let (store, loaded) = restart(&path, 0);
        assert_eq!(
            loaded.records,
            vec![
                jti("I", "j1", None),
                jti("I", "j2", None),
                subject("I", "s", 3, None)
            ]
        );
        let lines: Vec<&str> = loaded
            .warnings
            .iter()
            .map(|w| w.split(':').next().unwrap())
            .collect();
        assert_eq!(lines, vec!["line 2", "line 5", "line 6", "line 7"]);
        assert!(
            loaded.warnings[1].contains("missing field `jti`"),
            "{:?}",
            loaded.warnings
        );
        assert!(loaded.warnings.iter().all(|w| w.ends_with(", skipped")));
        // The bad lines are gone from the compacted log.
        assert_eq!(file_records(&path), loaded.records);
        drop(store);
        assert!(restart(&path, 0).1.warnings.is_empty());
    }

    #[test]
    fn an_overlong_line_is_skipped_without_losing_the_next() {
        let dir = TempDir::new();
        let path = dir.log();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut content = line(&jti("I", "j1", None)).into_bytes();
        content.extend(std::iter::repeat_n(b'x', (MAX_LINE_BYTES as usize) * 3));
        content.push(b'\n');
        content.extend(line(&jti("I", "j2", None)).into_bytes());
        fs::write(&path, content).unwrap();
        let (_, loaded) = restart(&path, 0);
        assert_eq!(
            loaded.records,
            vec![jti("I", "j1", None), jti("I", "j2", None)]
        );
        assert_eq!(
            loaded.warnings,
            vec![format!(
                "line 2: longer than {MAX_LINE_BYTES} bytes, skipped"
            )]
        );
    }

    #[test]
    fn warnings_are_capped() {
        let dir = TempDir::new();
        let path = dir.log();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "garbage\n".repeat(MAX_WARNINGS + 7)).unwrap();
        let (_, loaded) = restart(&path, 0);
        assert_eq!(loaded.warnings.len(), MAX_WARNINGS + 1);
        assert_eq!(loaded.warnings[MAX_WARNINGS], "7 more bad lines skipped");
    }

    #[test]
    fn compaction_writes_exactly_the_live_state() {
        let dir = TempDir::new();
        let path = dir.log();
        let (store, _) = restart(&path, 0);
        for i in 0..50 {
            store.append(&jti("I", &format!("j{i}"), Some(i))).unwrap();
            store.append(&subject("I", "s", i, None)).unwrap();
            if i % 2 == 0 {
                store
                    .append(&Record::DeleteJti {
                        iss: "I".into(),
                        jti: format!("j{i}"),
                    })
                    .unwrap();
            }
        }
        drop(store);
        let (store, loaded) = restart(&path, 20);
        let mut expected: Vec<Record> = (21..50)
            .filter(|i| i % 2 == 1)
            .map(|i| jti("I", &format!("j{i}"), Some(i)))
            .collect();
        expected.insert(0, subject("I", "s", 49, None));
        assert_eq!(loaded.records, expected);
        assert_eq!(file_records(&path), expected);
        assert!(!store.tmp_path().exists());
        // Compacting a compacted log changes nothing.
        let again = store.load_and_compact(20).unwrap();
        assert_eq!(again.records, expected);
        assert_eq!(file_records(&path), expected);
    }

    #[test]
    fn a_compaction_failure_is_an_error_not_a_panic() {
        let dir = TempDir::new();
        let path = dir.log();
        let store = FileStore::open(&path).unwrap();
        // Runs as root in CI, so a read-only directory would not stop it; a directory where the
        // temporary file must go does.
        fs::create_dir_all(store.tmp_path().join("occupied")).unwrap();
        let err = store.load_and_compact(0).unwrap_err();
        assert!(err.contains("cannot compact"), "{err}");
        assert!(err.contains(".tmp"), "{err}");
    }

    #[test]
    fn open_fails_cleanly_on_a_directory() {
        let dir = TempDir::new();
        let err = FileStore::open(&dir.0).unwrap_err();
        assert!(err.contains("cannot open"), "{err}");
    }

    #[test]
    fn memory_store_keeps_nothing() {
        let store = MemoryStore;
        store.append(&jti("I", "j", None)).unwrap();
        let loaded = store.load_and_compact(0).unwrap();
        assert!(loaded.records.is_empty() && loaded.warnings.is_empty());
        assert!(store.read_new().unwrap().records.is_empty());
        assert_eq!(store.name(), "memory");
    }

    /// Appends to the log as another process would, bypassing `store`.
    fn append_raw(path: &Path, bytes: &[u8]) {
        OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    fn read_new(store: &FileStore) -> Vec<Record> {
        let new = store.read_new().unwrap();
        assert!(new.warnings.is_empty(), "{:?}", new.warnings);
        new.records
    }

    /// Two stores on one path stand for the old and the new process of a graceful upgrade.
    #[test]
    fn two_processes_read_each_others_appends() {
        let dir = TempDir::new();
        let path = dir.log();
        let (old, _) = restart(&path, 0);
        old.append(&jti("I", "j0", None)).unwrap();
        let (new, loaded) = restart(&path, 0);
        assert_eq!(loaded.records, vec![jti("I", "j0", None)]);
        assert_eq!(read_new(&old), vec![jti("I", "j0", None)], "its own append");

        old.append(&jti("I", "j1", None)).unwrap();
        let delete = Record::DeleteJti {
            iss: "I".into(),
            jti: "j0".into(),
        };
        old.append(&delete).unwrap();
        assert_eq!(read_new(&new), vec![jti("I", "j1", None), delete.clone()]);
        assert!(read_new(&new).is_empty(), "read once");

        new.append(&subject("I", "s", 5, None)).unwrap();
        assert_eq!(
            read_new(&old),
            vec![jti("I", "j1", None), delete, subject("I", "s", 5, None)]
        );
        assert_eq!(read_new(&new), vec![subject("I", "s", 5, None)]);
    }

    #[test]
    fn an_append_after_another_process_compacted_lands_in_the_live_file() {
        let dir = TempDir::new();
        let path = dir.log();
        let (a, _) = restart(&path, 0);
        a.append(&jti("I", "j1", None)).unwrap();
        a.append(&jti("I", "expired", Some(1))).unwrap();
        let (b, loaded) = restart(&path, 10);
        assert_eq!(loaded.records, vec![jti("I", "j1", None)]);

        // `a` still holds the file `b` renamed over; its append must reach the new one.
        a.append(&jti("I", "j2", None)).unwrap();
        assert_eq!(
            file_records(&path),
            vec![jti("I", "j1", None), jti("I", "j2", None)]
        );
        assert_eq!(read_new(&b), vec![jti("I", "j2", None)]);
        // `a` had read the old file: the new one is new to it from its first byte.
        assert_eq!(
            read_new(&a),
            vec![jti("I", "j1", None), jti("I", "j2", None)]
        );
        drop((a, b));
        let (_, loaded) = restart(&path, 10);
        assert_eq!(
            loaded.records,
            vec![jti("I", "j1", None), jti("I", "j2", None)]
        );
    }

    /// The lock stands in for the other process being between the two steps it protects: the
    /// compaction (or append) must wait, or it would rename away (or write into the file
    /// behind) what the other process has just acknowledged.
    #[test]
    fn appends_and_compactions_of_two_processes_take_turns() {
        use std::sync::mpsc;
        use std::time::Duration;
        let dir = TempDir::new();
        let path = dir.log();
        let (old, _) = restart(&path, 0);
        old.append(&jti("I", "j0", None)).unwrap();

        let held = old.exclusive().unwrap();
        let new = FileStore::open(&path).unwrap();
        let (done, finished) = mpsc::channel();
        let compaction = std::thread::spawn(move || {
            let loaded = new.load_and_compact(0).unwrap();
            done.send(()).unwrap();
            (new, loaded)
        });
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "compacted while another process held the log"
        );
        // Acknowledged by the holder before it lets go: the compaction must read it.
        append_raw(&path, line(&jti("I", "j1", None)).as_bytes());
        drop(held);
        let (new, loaded) = compaction.join().unwrap();
        assert_eq!(
            loaded.records,
            vec![jti("I", "j0", None), jti("I", "j1", None)]
        );

        let held = new.exclusive().unwrap();
        let (done, finished) = mpsc::channel();
        let append = std::thread::spawn(move || {
            old.append(&jti("I", "j2", None)).unwrap();
            done.send(()).unwrap();
        });
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "appended while another process held the log"
        );
        drop(held);
        append.join().unwrap();
        assert_eq!(
            file_records(&path),
            vec![
                jti("I", "j0", None),
                jti("I", "j1", None),
                jti("I", "j2", None)
            ]
        );
    }

    #[test]
    fn an_append_recreates_a_removed_log() {
        let dir = TempDir::new();
        let path = dir.log();
        let (store, _) = restart(&path, 0);
        fs::remove_file(&path).unwrap();
        assert!(read_new(&store).is_empty());
        store.append(&jti("I", "j", None)).unwrap();
        assert_eq!(file_records(&path), vec![jti("I", "j", None)]);
        assert_eq!(read_new(&store), vec![jti("I", "j", None)]);
    }

    #[test]
    fn a_line_still_being_written_is_read_once_complete() {
        let dir = TempDir::new();
        let path = dir.log();
        let (writer, _) = restart(&path, 0);
        let (reader, _) = restart(&path, 0);
        // Followed in the middle of the other process's write.
        writer.append(&jti("I", "j1", None)).unwrap();
        let half = line(&jti("I", "j2", None));
        let (first, rest) = half.as_bytes().split_at(half.len() / 2);
        append_raw(&path, first);
        assert_eq!(read_new(&reader), vec![jti("I", "j1", None)]);
        append_raw(&path, rest);
        assert_eq!(read_new(&reader), vec![jti("I", "j2", None)]);

        let torn = line(&jti("I", "j3", None));
        let (first, rest) = torn.as_bytes().split_at(torn.len() - 1);
        append_raw(&path, first);
        assert!(read_new(&reader).is_empty());
        append_raw(&path, rest);
        assert_eq!(read_new(&reader), vec![jti("I", "j3", None)]);
        assert!(read_new(&reader).is_empty());
    }

    #[test]
    fn a_fragment_another_process_left_does_not_swallow_the_next_append() {
        let dir = TempDir::new();
        let path = dir.log();
        let (store, _) = restart(&path, 0);
        store.append(&jti("I", "j1", None)).unwrap();
        assert_eq!(read_new(&store), vec![jti("I", "j1", None)]);
        // Another process died in the middle of a write.
        append_raw(&path, b"{\"op\":\"revoke_jti\",\"iss\":\"I\",");
        store.append(&jti("I", "j2", None)).unwrap();
        let new = store.read_new().unwrap();
        assert_eq!(new.records, vec![jti("I", "j2", None)]);
        assert_eq!(new.warnings.len(), 1, "{:?}", new.warnings);
        let offset = line(&jti("I", "j1", None)).len();
        assert!(
            new.warnings[0].starts_with(&format!("byte {offset}: invalid record (")),
            "{:?}",
            new.warnings
        );
        drop(store);
        let (_, loaded) = restart(&path, 0);
        assert_eq!(
            loaded.records,
            vec![jti("I", "j1", None), jti("I", "j2", None)]
        );
    }

    #[test]
    fn bad_lines_in_new_records_are_skipped() {
        let dir = TempDir::new();
        let path = dir.log();
        let (store, _) = restart(&path, 0);
        let mut tail = b"not json\n\n[\"revoke_jti\",\"I\",\"j\"]\n".to_vec();
        tail.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES as usize + 10));
        tail.push(b'\n');
        tail.extend(line(&jti("I", "j", None)).into_bytes());
        append_raw(&path, &tail);
        let new = store.read_new().unwrap();
        assert_eq!(new.records, vec![jti("I", "j", None)]);
        assert_eq!(new.warnings.len(), 3, "{:?}", new.warnings);
        assert!(new.warnings[0].starts_with("byte 0: invalid record ("));
        assert!(new.warnings[1].starts_with("byte 10: invalid record ("));
        assert!(new.warnings[2].contains("longer than"));
        assert!(read_new(&store).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn log_and_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let path = dir.log();
        let store = FileStore::open(&path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        store.load_and_compact(0).unwrap();
        assert_eq!(mode(&path), 0o600, "the compacted file too");
    }

    /// `cargo test --release --lib revocation::store -- --ignored --nocapture`
    #[test]
    #[ignore = "performance: run in release"]
    fn replay_of_a_million_lines_is_fast() {
        const N: usize = 1_000_000;
        let dir = TempDir::new();
        let path = dir.log();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        {
            let mut out = BufWriter::new(File::create(&path).unwrap());
            for i in 0..N {
                let record = match i % 10 {
                    0 => subject(
                        "https://id.example.com",
                        &format!("user-{i}"),
                        1_700_000_000,
                        Some(1_700_086_400),
                    ),
                    // Deletes the revocation written just before it.
                    3 => Record::DeleteJti {
                        iss: "https://id.example.com".into(),
                        jti: format!("01J8Z3K4Q6W7E8R9T0Y1U2I3O{:07}", i - 1),
                    },
                    _ => jti(
                        "https://id.example.com",
                        &format!("01J8Z3K4Q6W7E8R9T0Y1U2I3O{i:07}"),
                        Some(1_700_000_000 + i as i64),
                    ),
                };
                serde_json::to_writer(&mut out, &record).unwrap();
                out.write_all(b"\n").unwrap();
            }
        }
        let size = fs::metadata(&path).unwrap().len();
        let store = FileStore::open(&path).unwrap();
        let cpu_start = thread_cpu_time();
        let start = Instant::now();
        let loaded = store.load_and_compact(0).unwrap();
        let elapsed = start.elapsed();
        let cpu = thread_cpu_time()
            .zip(cpu_start)
            .map(|(end, start)| end - start);
        println!(
            "replayed and compacted {N} lines ({:.1} MB) into {} live entries in {elapsed:?} \
             (on-CPU {cpu:?})",
            size as f64 / 1e6,
            loaded.records.len()
        );
        assert!(loaded.warnings.is_empty());
        assert_eq!(loaded.records.len(), N - 2 * N / 10);
        assert!(elapsed.as_secs_f64() < 5.0, "{elapsed:?}");
    }

    /// On-CPU time of this thread (Linux), so the figure means something on a shared machine.
    fn thread_cpu_time() -> Option<std::time::Duration> {
        let text = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let ns = text.split_whitespace().next()?.parse().ok()?;
        Some(std::time::Duration::from_nanos(ns))
    }
}
