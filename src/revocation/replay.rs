//! Reading the JSON-lines log back: one [`Record`] per `'\n'`-terminated line, as
//! [`super::file_log`] writes them.
//!
//! Replay is forgiving because a log that stops the gateway from starting is worse than one that
//! loses a line it never acknowledged: a torn last line (no `'\n'`, i.e. a write that never
//! reached its fsync) is skipped with a warning, and any other bad line is skipped with a warning
//! naming its line number while every valid line is kept.
//!
//! Everything here reads from a [`BufRead`] and nothing else, so the file store owns opening,
//! locking and seeking, and the parser can be tested on bytes.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::{self, BufRead, Read};

use serde::Deserialize;

use super::store::{Loaded, NewRecords, Record};

/// Longest line replay will buffer. A record is far smaller (admin bodies are capped at 64 KiB);
/// the cap only stops a corrupt file without newlines from being read into memory whole.
pub(super) const MAX_LINE_BYTES: u64 = 1 << 20;

/// Warnings kept per load or per read of new records; the rest are counted in one summary line so
/// a log full of garbage cannot flood the log.
const MAX_WARNINGS: usize = 100;

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

/// Reads a whole log and returns its live state at `now` plus warnings. Only an I/O error fails.
pub(super) fn replay<R: BufRead>(mut reader: R, now: i64) -> io::Result<Loaded> {
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
    Ok(Loaded {
        records: live.into_records(now),
        warnings: warnings.finish(),
    })
}

/// Reads the complete lines from `start` (the reader's position in the file) to the end, as
/// records in log order. Returns them and how many bytes they span; a torn last line is left for
/// the next read, when the append in flight has finished. Only an I/O error fails.
pub(super) fn read_records<R: BufRead>(mut reader: R, start: u64) -> io::Result<(NewRecords, u64)> {
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

/// Why replay skipped one line. Its `Display` goes into the warning, so it never quotes the line
/// (it could be anything, even a token).
#[derive(Debug, thiserror::Error)]
enum BadLine {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("{}", describe_json_error(.0))]
    Json(#[from] serde_json::Error),
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// More distinct issuers than an issuer number can count.
    #[error("too many issuers")]
    TooManyIssuers,
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
    jtis: HashMap<Key, Revoked<()>>,
    subjects: HashMap<Key, Revoked<i64>>,
    issuers: Vec<String>,
    issuer_ids: HashMap<String, u32>,
    last_issuer: Option<(u32, String)>,
    /// Order of first appearance, so a compacted log keeps the original order.
    next_seq: u64,
}

/// `(issuer number, jti or sub)`.
type Key = (u32, Box<str>);

/// A key in force: when it first appeared, its cut-off (`before` of a subject; a jti has none,
/// `()`) and until when.
struct Revoked<B> {
    seq: u64,
    before: B,
    expires_at: Option<i64>,
}

/// Two revocations of one key merge to the one that covers more: the later cut-off.
trait Cutoff: Copy {
    fn merge(self, other: Self) -> Self;
}

impl Cutoff for () {
    fn merge(self, _: ()) {}
}

impl Cutoff for i64 {
    fn merge(self, other: i64) -> i64 {
        self.max(other)
    }
}

impl LiveState {
    fn issuer(&mut self, iss: &str) -> Result<u32, BadLine> {
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

    fn intern(&mut self, iss: &str) -> Result<u32, BadLine> {
        if let Some(&id) = self.issuer_ids.get(iss) {
            return Ok(id);
        }
        let id = u32::try_from(self.issuers.len()).map_err(|_| BadLine::TooManyIssuers)?;
        self.issuers.push(iss.to_owned());
        self.issuer_ids.insert(iss.to_owned(), id);
        Ok(id)
    }

    fn apply(&mut self, line: Line<'_>) -> Result<(), BadLine> {
        let iss = self.issuer(&line.iss.0)?;
        let seq = &mut self.next_seq;
        match line.op {
            Op::RevokeJti => {
                let key = (iss, required("jti", line.jti)?);
                revoke(&mut self.jtis, seq, key, (), line.expires_at);
            }
            Op::RevokeSubject => {
                let key = (iss, required("sub", line.sub)?);
                let before = line.before.ok_or(BadLine::MissingField("before"))?;
                revoke(&mut self.subjects, seq, key, before, line.expires_at);
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
        let LiveState {
            jtis,
            subjects,
            issuers,
            ..
        } = self;
        let issuer = |id: u32| issuers.get(id as usize).cloned().unwrap_or_default();
        let mut ordered: Vec<(u64, Record)> = Vec::with_capacity(jtis.len() + subjects.len());
        ordered.extend(alive(jtis, now).map(|((iss, jti), e)| {
            let record = Record::RevokeJti {
                iss: issuer(iss),
                jti: jti.into_string(),
                expires_at: e.expires_at,
            };
            (e.seq, record)
        }));
        ordered.extend(alive(subjects, now).map(|((iss, sub), e)| {
            let record = Record::RevokeSubject {
                iss: issuer(iss),
                sub: sub.into_string(),
                before: e.before,
                expires_at: e.expires_at,
            };
            (e.seq, record)
        }));
        ordered.sort_unstable_by_key(|(seq, _)| *seq);
        ordered.into_iter().map(|(_, record)| record).collect()
    }
}

/// Lists `key`, or merges into its entry; `next_seq` numbers keys in order of first appearance.
fn revoke<B: Cutoff>(
    entries: &mut HashMap<Key, Revoked<B>>,
    next_seq: &mut u64,
    key: Key,
    before: B,
    expires_at: Option<i64>,
) {
    match entries.entry(key) {
        Entry::Occupied(mut e) => {
            let entry = e.get_mut();
            entry.before = entry.before.merge(before);
            entry.expires_at = later_expiry(entry.expires_at, expires_at);
        }
        Entry::Vacant(e) => {
            e.insert(Revoked {
                seq: *next_seq,
                before,
                expires_at,
            });
            *next_seq += 1;
        }
    }
}

/// Expiry is inclusive: an entry with `expires_at == now` is still in force.
fn alive<B>(
    entries: HashMap<Key, Revoked<B>>,
    now: i64,
) -> impl Iterator<Item = (Key, Revoked<B>)> {
    entries
        .into_iter()
        .filter(move |(_, e)| e.expires_at.is_none_or(|t| t >= now))
}

fn required(field: &'static str, value: Option<Text<'_>>) -> Result<Box<str>, BadLine> {
    match value {
        Some(Text(Cow::Borrowed(s))) => Ok(s.into()),
        Some(Text(Cow::Owned(s))) => Ok(s.into_boxed_str()),
        None => Err(BadLine::MissingField(field)),
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
    fn parse(bytes: &'a [u8]) -> Result<Line<'a>, BadLine> {
        // A derived struct also accepts a JSON array of its fields in order; `Record` does not.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(BadLine::NotAnObject);
        }
        Ok(serde_json::from_slice(bytes)?)
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
mod tests {
    use super::*;
    use crate::revocation::store::tests::{delete_jti, jti, jtis, line, lines, subject};

    /// What a start finds in a log holding `log`.
    fn load(log: impl AsRef<[u8]>, now: i64) -> Loaded {
        replay(log.as_ref(), now).unwrap()
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
    fn deletions_remove_and_later_revocations_come_back() {
        let log = lines(&[
            jti("I", "j1", None),
            jti("I", "j2", None),
            subject("I", "s1", 10, None),
            subject("I", "s2", 10, None),
            delete_jti("I", "j1"),
            Record::DeleteSubject {
                iss: "I".into(),
                sub: "s1".into(),
            },
            // Deleting something never revoked, or for another issuer, is harmless.
            delete_jti("other", "j2"),
            // Revoked again after its deletion: live again, ordered by its new appearance.
            jti("I", "j1", Some(50)),
        ]);
        assert_eq!(
            load(log, 0).records,
            vec![
                jti("I", "j2", None),
                subject("I", "s2", 10, None),
                jti("I", "j1", Some(50)),
            ]
        );
    }

    #[test]
    fn subject_cutoffs_merge_to_the_larger_before_and_later_expiry() {
        let log = lines(&[
            subject("I", "a", 100, Some(1000)),
            subject("I", "a", 50, Some(2000)),
            subject("I", "b", 10, None),
            subject("I", "b", 20, Some(30)),
            subject("other", "a", 5, Some(5)),
            jti("I", "j", Some(10)),
            jti("I", "j", Some(5)),
        ]);
        assert_eq!(
            load(log, 0).records,
            vec![
                subject("I", "a", 100, Some(2000)),
                subject("I", "b", 20, None),
                subject("other", "a", 5, Some(5)),
                jti("I", "j", Some(10)),
            ]
        );
    }

    #[test]
    fn complete_json_without_newline_is_still_torn() {
        // The newline is part of the write that the fsync acknowledges; without it the append
        // never returned Ok.
        let last = line(&jti("I", "j2", None));
        let loaded = load(line(&jti("I", "j1", None)) + last.trim_end(), 0);
        assert_eq!(loaded.records, jtis(&["j1"]));
        assert_eq!(loaded.warnings, vec!["line 2: torn last line skipped"]);
    }

    #[test]
    fn an_overlong_line_is_skipped_without_losing_the_next() {
        let mut log = line(&jti("I", "j1", None)).into_bytes();
        log.extend(std::iter::repeat_n(b'x', (MAX_LINE_BYTES as usize) * 3));
        log.push(b'\n');
        log.extend(line(&jti("I", "j2", None)).into_bytes());
        let loaded = load(log, 0);
        assert_eq!(loaded.records, jtis(&["j1", "j2"]));
        assert_eq!(
            loaded.warnings,
            vec![format!(
                "line 2: longer than {MAX_LINE_BYTES} bytes, skipped"
            )]
        );
    }

    #[test]
    fn warnings_are_capped() {
        let loaded = load("garbage\n".repeat(MAX_WARNINGS + 7), 0);
        assert_eq!(loaded.warnings.len(), MAX_WARNINGS + 1);
        assert_eq!(loaded.warnings[MAX_WARNINGS], "7 more bad lines skipped");
    }
}
