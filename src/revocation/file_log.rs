//! `store: file`: the revocation log as an append-only JSON-lines file, one [`Record`] per
//! `'\n'`-terminated line, compacted at every start.
//!
//! Appends are `write_all` + `sync_data` under a mutex: a revocation is either fully on disk or
//! reported as an error. Reading the lines back, and forgiving the ones a crash or a hand edit
//! left behind, is the `replay` module's.
//!
//! Another process shares the log during a graceful upgrade (conf/README.md §1 `-u`): the old process
//! keeps answering admin requests for seconds after the new one has started and compacted the
//! log. Three rules keep every acknowledged change: appends and the compaction hold the log's
//! sidecar lock (`<path>.lock`, flock(2)), so the compaction's read-rewrite-rename never
//! overtakes an append; an append always goes to the file currently at the path, whoever
//! renamed it; and each process follows the log ([`RevocationStore::read_new`]) to apply what
//! the other acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::replay::{read_records, replay};
use super::store::{Loaded, NewRecords, Record, RevocationStore, StoreError};

/// Tries per append when the log is replaced under it. A compaction takes far longer than an
/// append, so running out means something keeps replacing the file, and the append fails.
const MAX_APPEND_ATTEMPTS: usize = 3;

/// Why [`FileStore::open`] failed. It runs before the service exists, so the messages name the
/// log themselves.
#[derive(Debug, thiserror::Error)]
pub enum OpenLogError {
    #[error(
        "revocation log {}: cannot create directory {}: {source}",
        .path.display(),
        .dir.display()
    )]
    CreateDir {
        path: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("revocation log {}: cannot open: {source}", .path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("revocation log {}: cannot open {}: {source}", .path.display(), .lock.display())]
    OpenLock {
        path: PathBuf,
        lock: PathBuf,
        source: io::Error,
    },
}

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
    pub fn open(path: &Path) -> Result<FileStore, OpenLogError> {
        let dir = parent_dir(path);
        create_private_dirs(dir).map_err(|source| OpenLogError::CreateDir {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            source,
        })?;
        let appender = open_appender(path).map_err(|source| OpenLogError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let lock_path = sidecar(path, ".lock");
        let lock = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| OpenLogError::OpenLock {
                path: path.to_path_buf(),
                lock: lock_path,
                source,
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

    /// The log as errors name it.
    fn label(&self) -> String {
        format!("revocation log {}", self.path.display())
    }

    fn cannot_read(&self, source: io::Error) -> StoreError {
        StoreError::Read {
            store: self.label(),
            source,
        }
    }

    fn cannot_compact(&self, source: io::Error) -> StoreError {
        StoreError::Compact {
            store: self.label(),
            source,
        }
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
    fn read_all(&self, now: i64) -> io::Result<(FileId, Loaded)> {
        let file = File::open(&self.path)?;
        let id = FileId::of(&file.metadata()?);
        let loaded = replay(BufReader::with_capacity(1 << 16, file), now)?;
        Ok((id, loaded))
    }

    /// Reads what was appended since the follower's offset, and moves the offset past it.
    fn read_tail(&self) -> io::Result<NewRecords> {
        let mut follower = self.follower.lock();
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            // Removed by hand: nothing to read until an append creates it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(NewRecords::default()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
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
        file.seek(SeekFrom::Start(follower.offset))?;
        let (new, complete) = read_records(BufReader::new(file), follower.offset)?;
        follower.offset += complete;
        Ok(new)
    }

    /// Appends one serialised line to the file now at the path, under both locks.
    fn append_line(&self, line: &[u8]) -> io::Result<()> {
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
            appender.write_line(line)?;
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
    fn append(&self, record: &Record) -> Result<(), StoreError> {
        let mut line = Vec::with_capacity(128);
        serde_json::to_writer(&mut line, record).map_err(|e| StoreError::Write(e.into()))?;
        line.push(b'\n');
        self.append_line(&line).map_err(StoreError::Write)
    }

    fn load_and_compact(&self, now: i64) -> Result<Loaded, StoreError> {
        // Both held throughout, so no append of this process or of another can land in the
        // file about to be replaced after it was read.
        let mut appender = self.appender.lock();
        let _no_appends = self.exclusive().map_err(|e| self.cannot_compact(e))?;
        let (_, loaded) = self.read_all(now).map_err(|e| self.cannot_read(e))?;
        let (file, len) = self
            .rewrite(&loaded.records, &mut appender)
            .map_err(|e| self.cannot_compact(e))?;
        *self.follower.lock() = Follower {
            file: Some(file),
            offset: len,
        };
        Ok(loaded)
    }

    fn read_new(&self) -> Result<NewRecords, StoreError> {
        self.read_tail().map_err(|e| self.cannot_read(e))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::revocation::replay::MAX_LINE_BYTES;
    use crate::revocation::store::tests::{delete_jti, jti, jtis, line, lines, subject};
    use crate::revocation::test_support::TempDir;
    use std::time::{Duration, Instant};

    /// A log path in a fresh directory, which goes when this is dropped.
    struct Log {
        path: PathBuf,
        _dir: TempDir,
    }

    impl Log {
        fn new() -> Log {
            let dir = TempDir::new();
            Log {
                path: dir.log(),
                _dir: dir,
            }
        }

        /// A log that holds `content` before any store opens it, as a crash or an edit left it.
        fn holding(content: impl AsRef<[u8]>) -> Log {
            let log = Log::new();
            fs::create_dir_all(parent_dir(&log.path)).unwrap();
            fs::write(&log.path, content).unwrap();
            log
        }

        /// Opens a store on the log and loads it, as a restart would.
        fn restart(&self, now: i64) -> (FileStore, Loaded) {
            let store = FileStore::open(&self.path).unwrap();
            let loaded = store.load_and_compact(now).unwrap();
            (store, loaded)
        }

        /// What a restart at `now` finds, the store closed again.
        fn reload(&self, now: i64) -> Loaded {
            self.restart(now).1
        }

        /// The records in the file, read without the store.
        fn records(&self) -> Vec<Record> {
            fs::read_to_string(&self.path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }

        /// Appends to the log as another process would, bypassing any store.
        fn append_raw(&self, bytes: impl AsRef<[u8]>) {
            OpenOptions::new()
                .append(true)
                .open(&self.path)
                .unwrap()
                .write_all(bytes.as_ref())
                .unwrap();
        }
    }

    fn append_all(store: &FileStore, records: &[Record]) {
        for record in records {
            store.append(record).unwrap();
        }
    }

    fn read_new(store: &FileStore) -> Vec<Record> {
        let new = store.read_new().unwrap();
        assert!(new.warnings.is_empty(), "{:?}", new.warnings);
        new.records
    }

    /// Runs `work` on a thread while another process holds the log (`held`), checks that it
    /// waits, runs `meanwhile` as the holder, then lets go and returns what `work` returned.
    fn waits_for_the_lock<T: Send + 'static>(
        held: LogLock<'_>,
        work: impl FnOnce() -> T + Send + 'static,
        meanwhile: impl FnOnce(),
    ) -> T {
        let (done, finished) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let out = work();
            done.send(()).unwrap();
            out
        });
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "went ahead while another process held the log"
        );
        meanwhile();
        drop(held);
        worker.join().unwrap()
    }

    #[test]
    fn append_then_reload_round_trips() {
        let log = Log::new();
        let (store, loaded) = log.restart(100);
        assert!(loaded.records.is_empty() && loaded.warnings.is_empty());
        assert_eq!(store.name(), "file");
        let written = vec![
            jti("https://a", "j1", Some(200)),
            subject("https://a", "alice", 90, None),
            jti("https://b", "j\"2\n", None),
        ];
        append_all(&store, &written);
        drop(store);
        let loaded = log.reload(100);
        assert_eq!(loaded.records, written);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn expired_entries_are_dropped_at_load() {
        let log = Log::new();
        let (store, _) = log.restart(0);
        append_all(
            &store,
            &[
                jti("I", "old", Some(99)),
                jti("I", "edge", Some(100)),
                jti("I", "forever", None),
                subject("I", "old", 1, Some(50)),
                subject("I", "new", 1, Some(150)),
            ],
        );
        drop(store);
        let loaded = log.reload(100);
        assert_eq!(
            loaded.records,
            vec![
                jti("I", "edge", Some(100)),
                jti("I", "forever", None),
                subject("I", "new", 1, Some(150)),
            ]
        );
        // Compaction removed them from the file too.
        assert_eq!(log.records(), loaded.records);
    }

    #[test]
    fn torn_last_line_is_skipped_and_the_log_is_clean_afterwards() {
        let whole = [jti("I", "j1", None), subject("I", "s", 5, None)];
        let torn = line(&jti("I", "j3", None));
        let log = Log::holding(lines(&whole) + &torn[..torn.len() / 2]);

        let (store, loaded) = log.restart(0);
        assert_eq!(loaded.records, whole);
        assert_eq!(loaded.warnings, vec!["line 3: torn last line skipped"]);
        assert_eq!(fs::read_to_string(&log.path).unwrap(), lines(&whole));

        store.append(&jti("I", "j4", None)).unwrap();
        drop(store);
        let loaded = log.reload(0);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.records.len(), 3);
        assert_eq!(loaded.records[2], jti("I", "j4", None));
    }

    #[test]
    fn appending_after_a_torn_tail_without_loading_keeps_the_new_record() {
        let log = Log::holding(line(&jti("I", "j1", None)) + "{\"op\":\"rev");
        let store = FileStore::open(&log.path).unwrap();
        store.append(&jti("I", "j2", None)).unwrap();
        drop(store);
        let loaded = log.reload(0);
        assert_eq!(loaded.records, jtis(&["j1", "j2"]));
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].starts_with("line 2: invalid record ("));
    }

    #[test]
    fn bad_lines_in_the_middle_are_reported_by_line_number() {
        let log = Log::holding(
            [
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
            .concat(),
        );
        let (store, loaded) = log.restart(0);
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
        assert_eq!(log.records(), loaded.records);
        drop(store);
        assert!(log.reload(0).warnings.is_empty());
    }

    #[test]
    fn compaction_writes_exactly_the_live_state() {
        let log = Log::new();
        let (store, _) = log.restart(0);
        for i in 0..50 {
            store.append(&jti("I", &format!("j{i}"), Some(i))).unwrap();
            store.append(&subject("I", "s", i, None)).unwrap();
            if i % 2 == 0 {
                store.append(&delete_jti("I", &format!("j{i}"))).unwrap();
            }
        }
        drop(store);
        let (store, loaded) = log.restart(20);
        let mut expected: Vec<Record> = (21..50)
            .filter(|i| i % 2 == 1)
            .map(|i| jti("I", &format!("j{i}"), Some(i)))
            .collect();
        expected.insert(0, subject("I", "s", 49, None));
        assert_eq!(loaded.records, expected);
        assert_eq!(log.records(), expected);
        assert!(!store.tmp_path().exists());
        // Compacting a compacted log changes nothing.
        let again = store.load_and_compact(20).unwrap();
        assert_eq!(again.records, expected);
        assert_eq!(log.records(), expected);
    }

    #[test]
    fn a_compaction_failure_is_an_error_not_a_panic() {
        let log = Log::new();
        let store = FileStore::open(&log.path).unwrap();
        // Runs as root in CI, so a read-only directory would not stop it; a directory where the
        // temporary file must go does.
        fs::create_dir_all(store.tmp_path().join("occupied")).unwrap();
        let err = store.load_and_compact(0).unwrap_err();
        assert!(matches!(err, StoreError::Compact { .. }), "{err:?}");
        let text = err.to_string();
        let expected = format!("revocation log {}: cannot compact: ", log.path.display());
        assert!(text.starts_with(&expected), "{text}");
        assert!(text.contains(".tmp"), "{text}");
    }

    #[test]
    fn open_fails_cleanly_on_a_directory() {
        let dir = TempDir::new();
        let err = FileStore::open(&dir.0).unwrap_err();
        assert!(matches!(err, OpenLogError::Open { .. }), "{err:?}");
        let text = err.to_string();
        let expected = format!("revocation log {}: cannot open: ", dir.0.display());
        assert!(text.starts_with(&expected), "{text}");
    }

    /// Two stores on one path stand for the old and the new process of a graceful upgrade.
    #[test]
    fn two_processes_read_each_others_appends() {
        let log = Log::new();
        let (old, _) = log.restart(0);
        old.append(&jti("I", "j0", None)).unwrap();
        let (new, loaded) = log.restart(0);
        assert_eq!(loaded.records, jtis(&["j0"]));
        assert_eq!(read_new(&old), jtis(&["j0"]), "its own append");

        old.append(&jti("I", "j1", None)).unwrap();
        let delete = delete_jti("I", "j0");
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
        let log = Log::new();
        let (a, _) = log.restart(0);
        append_all(&a, &[jti("I", "j1", None), jti("I", "expired", Some(1))]);
        let (b, loaded) = log.restart(10);
        assert_eq!(loaded.records, jtis(&["j1"]));

        // `a` still holds the file `b` renamed over; its append must reach the new one.
        a.append(&jti("I", "j2", None)).unwrap();
        assert_eq!(log.records(), jtis(&["j1", "j2"]));
        assert_eq!(read_new(&b), jtis(&["j2"]));
        // `a` had read the old file: the new one is new to it from its first byte.
        assert_eq!(read_new(&a), jtis(&["j1", "j2"]));
        drop((a, b));
        assert_eq!(log.reload(10).records, jtis(&["j1", "j2"]));
    }

    /// The lock stands in for the other process being between the two steps it protects: the
    /// compaction (or append) must wait, or it would rename away (or write into the file
    /// behind) what the other process has just acknowledged.
    #[test]
    fn appends_and_compactions_of_two_processes_take_turns() {
        let log = Log::new();
        let (old, _) = log.restart(0);
        old.append(&jti("I", "j0", None)).unwrap();

        let new = FileStore::open(&log.path).unwrap();
        let (new, loaded) = waits_for_the_lock(
            old.exclusive().unwrap(),
            move || {
                let loaded = new.load_and_compact(0).unwrap();
                (new, loaded)
            },
            // Acknowledged by the holder before it lets go: the compaction must read it.
            || log.append_raw(line(&jti("I", "j1", None))),
        );
        assert_eq!(loaded.records, jtis(&["j0", "j1"]));

        waits_for_the_lock(
            new.exclusive().unwrap(),
            move || old.append(&jti("I", "j2", None)).unwrap(),
            || {},
        );
        assert_eq!(log.records(), jtis(&["j0", "j1", "j2"]));
    }

    #[test]
    fn an_append_recreates_a_removed_log() {
        let log = Log::new();
        let (store, _) = log.restart(0);
        fs::remove_file(&log.path).unwrap();
        assert!(read_new(&store).is_empty());
        store.append(&jti("I", "j", None)).unwrap();
        assert_eq!(log.records(), jtis(&["j"]));
        assert_eq!(read_new(&store), jtis(&["j"]));
    }

    #[test]
    fn a_line_still_being_written_is_read_once_complete() {
        let log = Log::new();
        let (writer, _) = log.restart(0);
        let (reader, _) = log.restart(0);
        // Followed in the middle of the other process's write.
        writer.append(&jti("I", "j1", None)).unwrap();
        let half = line(&jti("I", "j2", None));
        let (first, rest) = half.as_bytes().split_at(half.len() / 2);
        log.append_raw(first);
        assert_eq!(read_new(&reader), jtis(&["j1"]));
        log.append_raw(rest);
        assert_eq!(read_new(&reader), jtis(&["j2"]));

        let torn = line(&jti("I", "j3", None));
        let (first, rest) = torn.as_bytes().split_at(torn.len() - 1);
        log.append_raw(first);
        assert!(read_new(&reader).is_empty());
        log.append_raw(rest);
        assert_eq!(read_new(&reader), jtis(&["j3"]));
        assert!(read_new(&reader).is_empty());
    }

    #[test]
    fn a_fragment_another_process_left_does_not_swallow_the_next_append() {
        let log = Log::new();
        let (store, _) = log.restart(0);
        store.append(&jti("I", "j1", None)).unwrap();
        assert_eq!(read_new(&store), jtis(&["j1"]));
        // Another process died in the middle of a write.
        log.append_raw(b"{\"op\":\"revoke_jti\",\"iss\":\"I\",");
        store.append(&jti("I", "j2", None)).unwrap();
        let new = store.read_new().unwrap();
        assert_eq!(new.records, jtis(&["j2"]));
        assert_eq!(new.warnings.len(), 1, "{:?}", new.warnings);
        let offset = line(&jti("I", "j1", None)).len();
        assert!(
            new.warnings[0].starts_with(&format!("byte {offset}: invalid record (")),
            "{:?}",
            new.warnings
        );
        drop(store);
        assert_eq!(log.reload(0).records, jtis(&["j1", "j2"]));
    }

    #[test]
    fn bad_lines_in_new_records_are_skipped() {
        let log = Log::new();
        let (store, _) = log.restart(0);
        let mut tail = b"not json\n\n[\"revoke_jti\",\"I\",\"j\"]\n".to_vec();
        tail.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES as usize + 10));
        tail.push(b'\n');
        tail.extend(line(&jti("I", "j", None)).into_bytes());
        log.append_raw(&tail);
        let new = store.read_new().unwrap();
        assert_eq!(new.records, jtis(&["j"]));
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
        let log = Log::new();
        let store = FileStore::open(&log.path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&log.path), 0o600);
        assert_eq!(mode(parent_dir(&log.path)), 0o700);
        store.load_and_compact(0).unwrap();
        assert_eq!(mode(&log.path), 0o600, "the compacted file too");
    }

    /// `cargo test --release --lib revocation::file_log -- --ignored --nocapture`
    #[test]
    #[ignore = "performance: run in release"]
    fn replay_of_a_million_lines_is_fast() {
        const N: usize = 1_000_000;
        const ISS: &str = "https://id.example.com";
        let log = Log::holding("");
        {
            let mut out = BufWriter::new(File::create(&log.path).unwrap());
            for i in 0..N {
                let record = match i % 10 {
                    0 => subject(
                        ISS,
                        &format!("user-{i}"),
                        1_700_000_000,
                        Some(1_700_086_400),
                    ),
                    // Deletes the revocation written just before it.
                    3 => delete_jti(ISS, &format!("01J8Z3K4Q6W7E8R9T0Y1U2I3O{:07}", i - 1)),
                    _ => jti(
                        ISS,
                        &format!("01J8Z3K4Q6W7E8R9T0Y1U2I3O{i:07}"),
                        Some(1_700_000_000 + i as i64),
                    ),
                };
                serde_json::to_writer(&mut out, &record).unwrap();
                out.write_all(b"\n").unwrap();
            }
        }
        let size = fs::metadata(&log.path).unwrap().len();
        let store = FileStore::open(&log.path).unwrap();
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
    fn thread_cpu_time() -> Option<Duration> {
        let text = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let ns = text.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    }
}
