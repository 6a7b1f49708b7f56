//! The data directory (`--data-dir`): the store's objects on disk, so that
//! a restarted server resumes with the same objects, uids and
//! resourceVersions, as kube-apiserver does over etcd.
//!
//! Two files, as etcd keeps a snapshot and a write-ahead log:
//! - `wal`: one record per write (the object's new bytes, or its deletion),
//!   appended under the store's lock in resourceVersion order and flushed
//!   to disk (`fdatasync`) before the write is acknowledged. Writers that
//!   wait at the same time share one flush.
//! - `snapshot`: every object at one resourceVersion, written to a
//!   temporary file, flushed and renamed into place; then the log is
//!   emptied. Taken at start and whenever the log passes [`LOG_LIMIT`].
//!
//! Every record is framed as `length (u32) | FNV-1a of the payload (u64) |
//! payload`. Opening replays the snapshot, then the log's records past it,
//! and stops at the first torn or corrupt record (a write cut short by a
//! crash, never acknowledged), cutting the log there. A `lock` file held
//! with an exclusive lock keeps a second server out.
//!
//! Pure `std::fs`; the store decides when to append, flush and snapshot.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use crate::{
    apimachinery::{hash::fnv1a, resource_key::ResourceKey},
    storage::object::{stored_from_bytes, Stored},
};

/// The log's size past which the store writes a snapshot and empties it.
pub const LOG_LIMIT: u64 = 64 * 1024 * 1024;

/// The largest record a reader accepts (an object is at most 1.5 MiB; the
/// rest is its key).
const MAX_RECORD: usize = 4 * 1024 * 1024;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_HEADER: u8 = 3;

/// Errors of opening a data directory.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// A file could not be created, read or written. Not retryable as is.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Another server holds the directory's lock.
    #[error("{0}: the data directory is in use by another fake-apiserver")]
    InUse(PathBuf),
    /// The snapshot is damaged (it is only ever renamed into place whole,
    /// so this is not a crash's doing: the disk or someone else wrote it).
    #[error("{path}: damaged at byte {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the damage starts.
        offset: usize,
        /// What is wrong.
        what: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DurableError + '_ {
    move |source| DurableError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a write does to an object, as logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The object is created or changed to these bytes.
    Put,
    /// The object is removed.
    Delete,
}

/// What a data directory held: the objects, the resourceVersion they are
/// at, and the state of the seeded generator.
#[derive(Debug, Default)]
pub struct Restored {
    /// The latest resourceVersion (0 for a new directory).
    pub rv: u64,
    /// The generator's state after the latest write (`None` for a new directory).
    pub rng: Option<u64>,
    /// Every object, in no particular order.
    pub objects: Vec<(ResourceKey, Stored)>,
    /// Bytes of a torn or corrupt log tail that were cut off.
    pub cut: u64,
}

/// An open data directory: the log's writing end, kept under the store's
/// lock.
pub struct DataDir {
    dir: PathBuf,
    wal: File,
    wal_len: u64,
    buf: Vec<u8>,
    _lock: File,
}

/// The flushing end, used outside the store's lock: writes wait here until
/// the log is on disk up to their resourceVersion.
pub struct Flusher {
    file: Mutex<File>,
    appended: AtomicU64,
    flushed: AtomicU64,
}

impl DataDir {
    /// Opens (creating if needed) `dir`, locks it, and reads what it holds.
    pub fn open(dir: &Path) -> Result<(DataDir, Flusher, Restored), DurableError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(DurableError::InUse(dir.to_path_buf()));
        }
        let mut restored = Restored::default();
        // Every object read so far, by resource and key: the snapshot's,
        // then the log's changes on top.
        let mut objects = Objects::new();
        let snapshot_path = dir.join("snapshot");
        match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let (records, valid) = frames(&bytes);
                if valid != bytes.len() {
                    return Err(DurableError::Corrupt {
                        path: snapshot_path,
                        offset: valid,
                        what: "a record is torn or fails its checksum".into(),
                    });
                }
                for (offset, payload) in records {
                    apply(&mut restored, &mut objects, payload).map_err(|what| {
                        DurableError::Corrupt {
                            path: snapshot_path.clone(),
                            offset,
                            what,
                        }
                    })?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&snapshot_path)(e)),
        }
        let wal_path = dir.join("wal");
        let mut wal = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&wal_path)
            .map_err(io_error(&wal_path))?;
        let bytes = std::fs::read(&wal_path).map_err(io_error(&wal_path))?;
        let (records, valid) = frames(&bytes);
        let snapshot_rv = restored.rv;
        let mut cut_at = valid;
        for (offset, payload) in records {
            if record_rv(payload).is_some_and(|rv| rv <= snapshot_rv) {
                continue;
            }
            if apply(&mut restored, &mut objects, payload).is_err() {
                cut_at = offset;
                break;
            }
        }
        restored.objects = objects.into_iter().map(|(k, v)| (k.0, v)).collect();
        if cut_at < bytes.len() {
            restored.cut = (bytes.len() - cut_at) as u64;
            wal.set_len(cut_at as u64).map_err(io_error(&wal_path))?;
            wal.sync_all().map_err(io_error(&wal_path))?;
        }
        wal.flush().map_err(io_error(&wal_path))?;
        let flush_handle = wal.try_clone().map_err(io_error(&wal_path))?;
        let data = DataDir {
            dir: dir.to_path_buf(),
            wal,
            wal_len: cut_at as u64,
            buf: Vec::new(),
            _lock: lock,
        };
        let flusher = Flusher {
            file: Mutex::new(flush_handle),
            appended: AtomicU64::new(restored.rv),
            flushed: AtomicU64::new(restored.rv),
        };
        Ok((data, flusher, restored))
    }

    /// Appends one write to the log (not yet flushed: see [`Flusher::flush`]).
    /// On an error nothing of the record stays in the log.
    pub fn append(
        &mut self,
        flusher: &Flusher,
        op: Op,
        rng: u64,
        key: &ResourceKey,
        object: &Stored,
    ) -> io::Result<()> {
        self.buf.clear();
        let code = match op {
            Op::Put => OP_PUT,
            Op::Delete => OP_DELETE,
        };
        encode(&mut self.buf, code, object.rv, rng, Some((key, object)));
        if let Err(e) = self.wal.write_all(&self.buf) {
            // A partial record would hide every later one from replay.
            let _ = self.wal.set_len(self.wal_len);
            return Err(e);
        }
        self.wal_len += self.buf.len() as u64;
        flusher.appended.fetch_max(object.rv, Ordering::AcqRel);
        Ok(())
    }

    /// Whether the log has grown past [`LOG_LIMIT`].
    pub fn log_is_long(&self) -> bool {
        self.wal_len > LOG_LIMIT
    }

    /// Writes a snapshot of `objects` at `rv` and empties the log. The
    /// snapshot is flushed and renamed into place before the log is cut,
    /// so a crash at any point leaves one of the two complete.
    pub fn snapshot<'a>(
        &mut self,
        flusher: &Flusher,
        rv: u64,
        rng: u64,
        objects: impl Iterator<Item = (&'a ResourceKey, &'a Stored)>,
    ) -> io::Result<()> {
        let tmp = self.dir.join("snapshot.tmp");
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        let mut buf = Vec::new();
        encode(&mut buf, OP_HEADER, rv, rng, None);
        out.write_all(&buf)?;
        for (key, object) in objects {
            buf.clear();
            encode(&mut buf, OP_PUT, object.rv, rng, Some((key, object)));
            out.write_all(&buf)?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("snapshot"))?;
        File::open(&self.dir)?.sync_all()?;
        // Hold the flusher's lock so no flush runs on a file being cut.
        let _guard = flusher.file.lock().unwrap_or_else(|e| e.into_inner());
        self.wal.set_len(0)?;
        self.wal.sync_all()?;
        self.wal_len = 0;
        flusher.appended.fetch_max(rv, Ordering::AcqRel);
        flusher.flushed.fetch_max(rv, Ordering::AcqRel);
        Ok(())
    }
}

impl Flusher {
    /// Returns once the log is on disk up to resourceVersion `rv`. One
    /// writer flushes for every writer waiting behind it.
    pub fn flush(&self, rv: u64) -> io::Result<()> {
        if self.flushed.load(Ordering::Acquire) >= rv {
            return Ok(());
        }
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if self.flushed.load(Ordering::Acquire) >= rv {
            return Ok(());
        }
        let target = self.appended.load(Ordering::Acquire);
        file.sync_data()?;
        self.flushed.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }
}

/// Appends one framed record to `buf`.
fn encode(buf: &mut Vec<u8>, op: u8, rv: u64, rng: u64, object: Option<(&ResourceKey, &Stored)>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 12]);
    buf.push(op);
    buf.extend_from_slice(&rv.to_le_bytes());
    buf.extend_from_slice(&rng.to_le_bytes());
    if let Some((key, object)) = object {
        for s in [key.group.as_str(), key.plural.as_str(), &object.key] {
            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
        buf.extend_from_slice(&(object.ns_len as u32).to_le_bytes());
        buf.extend_from_slice(&object.bytes);
    }
    let payload = &buf[start + 12..];
    let len = (payload.len() as u32).to_le_bytes();
    let sum = fnv1a(payload).to_le_bytes();
    buf[start..start + 4].copy_from_slice(&len);
    buf[start + 4..start + 12].copy_from_slice(&sum);
}

/// The intact records of `bytes` (each with its offset) and the length of
/// the intact prefix.
fn frames(bytes: &[u8]) -> (Vec<(usize, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 12 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let sum = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap_or_default());
        if len > MAX_RECORD || bytes.len() - at - 12 < len {
            break;
        }
        let payload = &bytes[at + 12..at + 12 + len];
        if fnv1a(payload) != sum {
            break;
        }
        out.push((at, payload));
        at += 12 + len;
    }
    (out, at)
}

fn record_rv(payload: &[u8]) -> Option<u64> {
    payload
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
}

/// A cursor over a record's payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("a record ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "short")?,
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "short")?,
        ))
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())
    }
}

type Objects = std::collections::HashMap<(ResourceKey, String), Stored>;

/// Applies one record to what is being restored.
fn apply(restored: &mut Restored, objects: &mut Objects, payload: &[u8]) -> Result<(), String> {
    let mut r = Reader(payload);
    let op = r.take(1)?[0];
    let rv = r.u64()?;
    let rng = r.u64()?;
    restored.rng = Some(rng);
    if op == OP_HEADER {
        restored.rv = rv;
        return Ok(());
    }
    let (group, plural, okey) = (r.str()?, r.str()?, r.str()?);
    let ns_len = r.u32()? as usize;
    if ns_len > okey.len() || !okey.is_char_boundary(ns_len) {
        return Err(format!(
            "namespace length {ns_len} does not fit key {okey:?}"
        ));
    }
    let key = ResourceKey::new(group, plural);
    restored.rv = restored.rv.max(rv);
    match op {
        OP_PUT => {
            let stored = stored_from_bytes(okey, ns_len, rv, r.0.to_vec())?;
            objects.insert((key, okey.to_string()), stored);
        }
        OP_DELETE => {
            objects.remove(&(key, okey.to_string()));
        }
        other => return Err(format!("unknown record type {other}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(ns: &str, name: &str, rv: u64) -> Stored {
        let value = json!({"metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string(), "labels": {"a": "b"}}});
        stored_from_bytes(
            &format!("{ns}/{name}"),
            ns.len(),
            rv,
            serde_json::to_vec(&value).unwrap(),
        )
        .unwrap()
    }

    fn names(restored: &Restored) -> Vec<String> {
        let mut names: Vec<String> = restored
            .objects
            .iter()
            .map(|(k, o)| format!("{}/{}@{}", k.plural, o.key, o.rv))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_reopened_directory_should_hold_every_appended_write() {
        let dir = tempfile::tempdir().unwrap();
        let key = ResourceKey::new("", "configmaps");
        {
            let (mut data, flusher, restored) = DataDir::open(dir.path()).unwrap();
            assert_eq!((restored.rv, restored.rng), (0, None));
            data.append(&flusher, Op::Put, 7, &key, &object("ns", "a", 1))
                .unwrap();
            data.append(&flusher, Op::Put, 8, &key, &object("ns", "b", 2))
                .unwrap();
            data.append(&flusher, Op::Delete, 9, &key, &object("ns", "a", 3))
                .unwrap();
            flusher.flush(3).unwrap();
        }
        let (_, _, restored) = DataDir::open(dir.path()).unwrap();
        assert_eq!((restored.rv, restored.rng, restored.cut), (3, Some(9), 0));
        assert_eq!(names(&restored), ["configmaps/ns/b@2"]);
        let (_, b) = &restored.objects[0];
        assert_eq!(
            (b.namespace(), b.name(), b.label("a")),
            ("ns", "b", Some("b"))
        );
    }

    #[test]
    fn a_snapshot_should_replace_the_log_and_later_writes_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = ResourceKey::new("apps", "deployments");
        {
            let (mut data, flusher, _) = DataDir::open(dir.path()).unwrap();
            let a = object("ns", "a", 1);
            data.append(&flusher, Op::Put, 1, &key, &a).unwrap();
            data.snapshot(&flusher, 1, 1, [(&key, &a)].into_iter())
                .unwrap();
            assert_eq!(std::fs::metadata(dir.path().join("wal")).unwrap().len(), 0);
            data.append(&flusher, Op::Put, 2, &key, &object("ns", "b", 2))
                .unwrap();
        }
        let (_, _, restored) = DataDir::open(dir.path()).unwrap();
        assert_eq!(restored.rv, 2);
        assert_eq!(
            names(&restored),
            ["deployments/ns/a@1", "deployments/ns/b@2"]
        );
    }

    #[test]
    fn a_torn_tail_should_be_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let key = ResourceKey::new("", "configmaps");
        {
            let (mut data, flusher, _) = DataDir::open(dir.path()).unwrap();
            for rv in 1..=3 {
                data.append(
                    &flusher,
                    Op::Put,
                    rv,
                    &key,
                    &object("ns", &format!("o{rv}"), rv),
                )
                .unwrap();
            }
        }
        // Cut the last record short, as a crash inside write(2) would.
        let wal = dir.path().join("wal");
        let len = std::fs::metadata(&wal).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&wal)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (_, _, restored) = DataDir::open(dir.path()).unwrap();
        assert_eq!(restored.rv, 2);
        assert!(restored.cut > 0);
        assert_eq!(
            names(&restored),
            ["configmaps/ns/o1@1", "configmaps/ns/o2@2"]
        );
        // A flipped byte fails the checksum the same way.
        let mut bytes = std::fs::read(&wal).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        std::fs::write(&wal, &bytes).unwrap();
        let (_, _, restored) = DataDir::open(dir.path()).unwrap();
        assert_eq!(names(&restored), ["configmaps/ns/o1@1"]);
    }

    #[test]
    fn a_second_server_should_be_kept_out() {
        let dir = tempfile::tempdir().unwrap();
        let _first = DataDir::open(dir.path()).unwrap();
        match DataDir::open(dir.path()) {
            Err(DurableError::InUse(path)) => assert_eq!(path, dir.path()),
            other => panic!("expected InUse, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_damaged_snapshot_should_be_an_error_not_a_loss() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snapshot"), b"not a snapshot at all").unwrap();
        match DataDir::open(dir.path()) {
            Err(DurableError::Corrupt { offset, .. }) => assert_eq!(offset, 0),
            other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
        }
    }
}
