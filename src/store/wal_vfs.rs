//! SQLite: a VFS for the writer's connection that hands the WAL's appends to the kernel in large
//! writes instead of two per page.
//!
//! SQLite appends each WAL frame with two `pwrite`s — its 24-byte header, then its page (1 KiB,
//! [`super::direct::PAGE_SIZE`]) — and a group commit writes hundreds of frames. The kernel's
//! cost is per call far more than per byte (ext4 locks the inode, finds and locks the page-cache
//! page and marks it dirty on every call): `perf` put 12 % of the server's CPU under durable
//! ingest in the writer's `pwrite`s. This VFS wraps the default one and gathers consecutive
//! appends to a WAL file in a buffer, handed over in one write:
//!
//! - when the transaction's commit frame has been appended (a frame header whose commit size is
//!   not zero — the WAL file format marks a transaction's last frame so), so a commit returns only
//!   once its frames are in the kernel, as before, and a failed write fails the commit;
//! - when the next write is not contiguous or would overflow the buffer;
//! - before any other operation on the WAL file (a read, a sync, its size, a lock, closing), and
//!   before any operation on its database file — among them those on the shared memory through
//!   which other connections learn of new frames.
//!
//! So no other connection can see a frame that is not yet in the kernel, a crash of the process
//! loses nothing a commit had returned, and the bytes in the file are the ones SQLite wrote, in
//! the order it wrote them. Other files (the database itself, written by checkpoints) go straight
//! through: the end of a passive checkpoint reaches the VFS only through calls whose errors SQLite
//! ignores, so a deferred write failing there could not stop it from recording pages as copied.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the VFS is registered under.
pub const NAME: &CStr = c"loft-wal";
/// Appends gathered before a write is forced: sixty 1 KiB frames. (Unix's VFS writes at most
/// 128 KiB − 1 bytes per call — it masks the length to 17 bits — and reports a full disk when a
/// call writes nothing: a 256 KiB write did exactly that.)
const CAPACITY: usize = 64 << 10;
/// The size of a WAL frame's header; bytes 4..8 hold the database size after a commit frame, and
/// zero in every other frame.
const FRAME_HEADER: usize = 24;

/// Registers the VFS with SQLite, once; `Err` holds SQLite's result code when it could not be.
pub fn register() -> Result<(), c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find` initialises SQLite if needed and returns a VFS that lives
        // as long as the process; the new VFS is leaked, as SQLite keeps a pointer to it.
        unsafe {
            let real = ffi::sqlite3_vfs_find(ptr::null());
            if real.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let mut vfs = *real;
            vfs.iVersion = vfs.iVersion.min(2); // version 3 adds only system-call overrides, for tests
            vfs.szOsFile = (size_of::<File>() + (*real).szOsFile as usize) as c_int;
            vfs.pNext = ptr::null_mut();
            vfs.zName = NAME.as_ptr();
            vfs.pAppData = real.cast();
            vfs.xOpen = Some(open);
            vfs.xDelete = vfs.xDelete.and(Some(delete));
            vfs.xAccess = vfs.xAccess.and(Some(access));
            vfs.xFullPathname = vfs.xFullPathname.and(Some(full_pathname));
            vfs.xRandomness = vfs.xRandomness.and(Some(randomness));
            vfs.xSleep = vfs.xSleep.and(Some(sleep));
            vfs.xCurrentTime = vfs.xCurrentTime.and(Some(current_time));
            vfs.xGetLastError = vfs.xGetLastError.and(Some(last_error));
            vfs.xCurrentTimeInt64 = vfs.xCurrentTimeInt64.and(Some(current_time_int64));
            // The remaining entries (loading extensions, which Loft never does) are the default
            // VFS's own; Unix's ignore their VFS argument.
            match ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0) {
                ffi::SQLITE_OK => Ok(()),
                rc => Err(rc),
            }
        }
    })
}

/// The VFS's file: SQLite allocates `szOsFile` bytes, this struct followed by the default VFS's
/// own file, which every call is passed on to.
#[repr(C)]
struct File {
    /// What SQLite sees (must come first).
    base: ffi::sqlite3_file,
    /// The default VFS's file, right after this struct.
    real: *mut ffi::sqlite3_file,
    /// A WAL file's appends not yet written; null for other files.
    pending: *mut Pending,
    /// A WAL file's database file, and a database file's WAL while it is open (the same
    /// connection's, so only ever used from the thread using the connection).
    peer: *mut File,
}

#[derive(Default)]
struct Pending {
    data: Vec<u8>,
    /// Where `data` goes in the file.
    offset: i64,
    /// The last append was a commit frame's header: its page, next, ends the transaction.
    commit_next: bool,
}

/// Method tables by the default VFS file's `iVersion` (SQLite only calls what a version has).
static METHODS: [ffi::sqlite3_io_methods; 3] = [methods(1), methods(2), methods(3)];

const fn methods(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(close),
        xRead: Some(read),
        xWrite: Some(write),
        xTruncate: Some(truncate),
        xSync: Some(sync),
        xFileSize: Some(file_size),
        xLock: Some(lock),
        xUnlock: Some(unlock),
        xCheckReservedLock: Some(check_reserved_lock),
        xFileControl: Some(file_control),
        xSectorSize: Some(sector_size),
        xDeviceCharacteristics: Some(device_characteristics),
        xShmMap: Some(shm_map),
        xShmLock: Some(shm_lock),
        xShmBarrier: Some(shm_barrier),
        xShmUnmap: Some(shm_unmap),
        xFetch: Some(fetch),
        xUnfetch: Some(unfetch),
    }
}

fn is_ours(file: *const ffi::sqlite3_file) -> bool {
    // SAFETY: a file SQLite hands out has a (possibly null) methods pointer.
    let methods = unsafe { (*file).pMethods };
    METHODS.iter().any(|m| ptr::eq(m, methods))
}

/// The default VFS, which this one wraps.
unsafe fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    unsafe { (*vfs).pAppData.cast() }
}

/// The default VFS file's methods.
unsafe fn real(f: *mut File) -> (&'static ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) {
    unsafe {
        let real = (*f).real;
        (&*(*real).pMethods, real)
    }
}

/// Writes what `f` holds back: `SQLITE_OK`, or the failed write's code (the bytes are dropped
/// either way, as an unbuffered write that failed would not have written them).
unsafe fn flush(f: *mut File) -> c_int {
    unsafe {
        let pending = (*f).pending;
        if pending.is_null() || (*pending).data.is_empty() {
            return ffi::SQLITE_OK;
        }
        let (methods, real) = real(f);
        let p = &mut *pending;
        #[cfg(test)]
        tests::WAL_WRITES.with(|n| n.set(n.get() + 1));
        let rc = methods.xWrite.expect("xWrite")(real, p.data.as_ptr().cast(), p.data.len() as c_int, p.offset);
        p.data.clear();
        p.commit_next = false;
        rc
    }
}

/// Before any operation but a write: the appends held by `f` or by its peer reach the file.
unsafe fn land(f: *mut File) -> c_int {
    unsafe {
        let rc = flush(f);
        let peer = (*f).peer;
        if rc != ffi::SQLITE_OK || peer.is_null() { rc } else { flush(peer) }
    }
}

/// Runs `call` on the default VFS's file once the buffered appends are written.
macro_rules! landed {
    ($file:expr, |$methods:ident, $real:ident| $call:expr) => {{
        let f = $file.cast::<File>();
        match land(f) {
            ffi::SQLITE_OK => {
                let ($methods, $real) = real(f);
                $call
            }
            rc => rc,
        }
    }};
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let real_vfs = real_vfs(vfs);
        let f = file.cast::<File>();
        let inner = f.add(1).cast::<ffi::sqlite3_file>();
        let rc = (*real_vfs).xOpen.expect("xOpen")(real_vfs, name, inner, flags, out_flags);
        // SQLite closes a file whose methods are set even when opening it failed.
        let methods = (*inner).pMethods;
        if methods.is_null() {
            (*file).pMethods = ptr::null();
            return rc;
        }
        let wal = flags & ffi::SQLITE_OPEN_WAL != 0;
        let db = if wal && !name.is_null() { ffi::sqlite3_database_file_object(name) } else { ptr::null_mut() };
        let peer = if !db.is_null() && is_ours(db) { db.cast::<File>() } else { ptr::null_mut() };
        let version = (*methods).iVersion.clamp(1, 3) as usize;
        f.write(File {
            base: ffi::sqlite3_file { pMethods: &METHODS[version - 1] },
            real: inner,
            pending: if wal { Box::into_raw(Box::default()) } else { ptr::null_mut() },
            peer,
        });
        if !peer.is_null() {
            (*peer).peer = f;
        }
        rc
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let f = file.cast::<File>();
        let landed = land(f);
        let peer = (*f).peer;
        if !peer.is_null() {
            (*peer).peer = ptr::null_mut();
        }
        if !(*f).pending.is_null() {
            drop(Box::from_raw((*f).pending));
            (*f).pending = ptr::null_mut();
        }
        let (methods, real) = real(f);
        let rc = methods.xClose.expect("xClose")(real);
        if landed != ffi::SQLITE_OK { landed } else { rc }
    }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    unsafe {
        let f = file.cast::<File>();
        let pending = (*f).pending;
        let (methods, real) = real(f);
        if pending.is_null() {
            return methods.xWrite.expect("xWrite")(real, data, amount, offset);
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount as usize);
        // Kept across a flush for a full buffer: the page after a commit frame's header still
        // ends the transaction.
        let commit = (*pending).commit_next;
        let held = (*pending).data.len();
        if held > 0 && (offset != (*pending).offset + held as i64 || held + bytes.len() > CAPACITY) {
            let rc = flush(f);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if bytes.len() > CAPACITY {
            #[cfg(test)]
            tests::WAL_WRITES.with(|n| n.set(n.get() + 1));
            return methods.xWrite.expect("xWrite")(real, data, amount, offset);
        }
        let p = &mut *pending;
        if p.data.is_empty() {
            p.offset = offset;
        }
        p.data.extend_from_slice(bytes);
        if commit {
            return flush(f);
        }
        p.commit_next = bytes.len() == FRAME_HEADER && bytes[4..8] != [0; 4];
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, data: *mut c_void, amount: c_int, offset: i64) -> c_int {
    unsafe { landed!(file, |m, real| m.xRead.expect("xRead")(real, data, amount, offset)) }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    unsafe { landed!(file, |m, real| m.xTruncate.expect("xTruncate")(real, size)) }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    #[cfg(test)]
    tests::SYNCS.with(|n| n.set(n.get() + 1));
    unsafe { landed!(file, |m, real| m.xSync.expect("xSync")(real, flags)) }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    unsafe { landed!(file, |m, real| m.xFileSize.expect("xFileSize")(real, size)) }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe { landed!(file, |m, real| m.xLock.expect("xLock")(real, level)) }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe { landed!(file, |m, real| m.xUnlock.expect("xUnlock")(real, level)) }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    unsafe { landed!(file, |m, real| m.xCheckReservedLock.expect("xCheckReservedLock")(real, out)) }
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    unsafe { landed!(file, |m, real| m.xFileControl.expect("xFileControl")(real, op, arg)) }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (m, real) = real(file.cast());
        m.xSectorSize.expect("xSectorSize")(real)
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (m, real) = real(file.cast());
        m.xDeviceCharacteristics.expect("xDeviceCharacteristics")(real)
    }
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    unsafe { landed!(file, |m, real| m.xShmMap.expect("xShmMap")(real, page, size, extend, out)) }
}

unsafe extern "C" fn shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    unsafe { landed!(file, |m, real| m.xShmLock.expect("xShmLock")(real, offset, n, flags)) }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    unsafe {
        let f = file.cast::<File>();
        // SQLite publishes a WAL's new frames to other connections right after this barrier and
        // cannot be told of a failure here. Every commit's frames were written with its commit
        // frame, so nothing is held at this point; should anything be and fail to write, dying
        // before the frames are published is what keeps the database whole: recovery reads the
        // WAL back to its last complete commit, and no commit after that one had returned.
        if land(f) != ffi::SQLITE_OK {
            eprintln!("loft: could not write the SQLite WAL before publishing its frames; stopping");
            std::process::abort();
        }
        let (m, real) = real(f);
        m.xShmBarrier.expect("xShmBarrier")(real)
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    unsafe { landed!(file, |m, real| m.xShmUnmap.expect("xShmUnmap")(real, delete)) }
}

unsafe extern "C" fn fetch(file: *mut ffi::sqlite3_file, offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int {
    unsafe { landed!(file, |m, real| m.xFetch.expect("xFetch")(real, offset, amount, out)) }
}

unsafe extern "C" fn unfetch(file: *mut ffi::sqlite3_file, offset: i64, p: *mut c_void) -> c_int {
    unsafe { landed!(file, |m, real| m.xUnfetch.expect("xUnfetch")(real, offset, p)) }
}

// The VFS-level calls, passed on to the default VFS.

unsafe extern "C" fn delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    unsafe {
        let r = real_vfs(vfs);
        (*r).xDelete.expect("xDelete")(r, name, sync_dir)
    }
}

unsafe extern "C" fn access(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, flags: c_int, out: *mut c_int) -> c_int {
    unsafe {
        let r = real_vfs(vfs);
        (*r).xAccess.expect("xAccess")(r, name, flags, out)
    }
}

unsafe extern "C" fn full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    unsafe {
        let r = real_vfs(vfs);
        (*r).xFullPathname.expect("xFullPathname")(r, name, n, out)
    }
}

unsafe extern "C" fn randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    unsafe {
        let r = real_vfs(vfs);
        (*r).xRandomness.expect("xRandomness")(r, n, out)
    }
}

unsafe extern "C" fn sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    unsafe {
        let r = real_vfs(vfs);
        (*r).xSleep.expect("xSleep")(r, micros)
    }
}

unsafe extern "C" fn current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    unsafe {
        let r = real_vfs(vfs);
        (*r).xCurrentTime.expect("xCurrentTime")(r, out)
    }
}

unsafe extern "C" fn last_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    unsafe {
        let r = real_vfs(vfs);
        (*r).xGetLastError.expect("xGetLastError")(r, n, out)
    }
}

unsafe extern "C" fn current_time_int64(vfs: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    unsafe {
        let r = real_vfs(vfs);
        (*r).xCurrentTimeInt64.expect("xCurrentTimeInt64")(r, out)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::Cell;

    use rusqlite::{Connection, OpenFlags};

    use super::*;

    thread_local! {
        /// Writes that reached a WAL file from this thread.
        pub static WAL_WRITES: Cell<u64> = const { Cell::new(0) };
        /// Syncs of any file opened through this VFS, from this thread.
        pub static SYNCS: Cell<u64> = const { Cell::new(0) };
    }

    pub fn wal_writes() -> u64 {
        WAL_WRITES.with(Cell::get)
    }

    pub fn syncs() -> u64 {
        SYNCS.with(Cell::get)
    }

    /// A WAL database of 1 KiB pages at `path`, created through the default VFS, and a
    /// connection to it through this one.
    fn writer(path: &std::path::Path) -> Connection {
        let setup = Connection::open(path).unwrap();
        setup.pragma_update(None, "page_size", 1024).unwrap();
        setup.pragma_update(None, "journal_mode", "WAL").unwrap();
        setup.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)").unwrap();
        drop(setup);
        register().unwrap();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags_and_vfs(path, flags, NAME).unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn
    }

    fn insert(conn: &Connection, ids: std::ops::Range<i64>) {
        let mut st = conn.prepare_cached("INSERT INTO t (id, body) VALUES (?1, ?2)").unwrap();
        for id in ids {
            st.execute(rusqlite::params![id, vec![id as u8; 600]]).unwrap();
        }
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_commit_reaches_the_wal_in_one_write_and_other_connections_see_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = writer(&path);
        let reader = Connection::open(&path).unwrap();
        let before = wal_writes();
        for batch in 0..40 {
            let tx = conn.transaction().unwrap();
            insert(&tx, batch * 20..batch * 20 + 20);
            tx.commit().unwrap();
            // Another connection (the default VFS, its own file descriptor) reads the commit
            // from the kernel as soon as it returns.
            assert_eq!(count(&reader), (batch + 1) * 20);
        }
        // Each transaction's ~20 frames (two writes each without this VFS) in one write, and
        // the WAL's header, synced on its own as the WAL starts.
        assert_eq!(wal_writes() - before, 40 + 1);
        let body: Vec<u8> = reader.query_row("SELECT body FROM t WHERE id = 777", [], |r| r.get(0)).unwrap();
        assert_eq!(body, vec![777_i64 as u8; 600]);
        let ok: String = reader.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
    }

    #[test]
    fn spilled_and_rolled_back_frames_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = writer(&path);
        // A page cache of 20 pages: a large transaction writes frames to the WAL before it
        // commits, and reads some back.
        conn.pragma_update(None, "cache_size", 20).unwrap();
        let reader = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        insert(&tx, 0..2_000);
        assert_eq!(count(&tx), 2_000);
        assert_eq!(count(&reader), 0);
        tx.rollback().unwrap();
        assert_eq!(count(&reader), 0);
        // Over the same WAL frames again, larger than the buffer, committed this time.
        let tx = conn.transaction().unwrap();
        insert(&tx, 0..1_000);
        tx.commit().unwrap();
        assert_eq!(count(&reader), 1_000);
        // Copied back into the database file and read from there.
        let (busy, _, _): (i64, i64, i64) =
            reader.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!(busy, 0);
        insert(&conn, 1_000..1_010);
        drop(conn);
        let reopened = Connection::open(&path).unwrap();
        assert_eq!(count(&reopened), 1_010);
        let ok: String = reopened.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
    }
}
