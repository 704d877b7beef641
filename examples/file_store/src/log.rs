//! The file: one JSON event per line, appended and synced before a call returns.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use coupon_core::{Error, Result};

use crate::state::Event;

/// What names this backend in errors.
const BACKEND: &str = "file-store";

/// The events in the file at `path` (created if missing), and the file opened for
/// appending after the last whole line, locked for this process alone: two processes
/// each replaying the file into memory would each judge the cap on their own.
///
/// A last line without its newline is a write the crash cut short: it was never
/// acknowledged (the sync had not returned), so it is dropped and the file truncated to
/// the last whole line, lest the next append be glued to it. Any other unreadable line
/// is corruption, and opening fails.
pub(crate) fn open(path: &Path) -> Result<(Vec<Event>, File)> {
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|error| io_error("opening", path, error))?;
    file.try_lock().map_err(|error| {
        Error::unavailable(
            BACKEND,
            format!("{} is open in another process: {error}", path.display()),
            None,
        )
    })?;
    if created {
        // The new file's name must survive a power cut with the first writes in it.
        sync_parent(path)?;
    }
    let mut events = Vec::new();
    let mut whole = 0u64;
    let mut reader = BufReader::new(&file);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bytes, not a String: a torn line may end inside a character.
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|error| io_error("reading", path, error))?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let event = serde_json::from_slice(&line).map_err(|error| {
            Error::backend(
                BACKEND,
                format!(
                    "{}: line {} is not an event",
                    path.display(),
                    events.len() + 1
                ),
                Some(error.into()),
            )
        })?;
        events.push(event);
        whole += read as u64;
    }
    drop(reader);
    file.set_len(whole)
        .map_err(|error| io_error("truncating a torn last line of", path, error))?;
    file.seek(SeekFrom::End(0))
        .map_err(|error| io_error("seeking", path, error))?;
    Ok((events, file))
}

/// Appends `events` in one write and syncs: when this returns `Ok`, they survive a
/// crash. An error leaves it unknown which of them reached the disk, and a crash in the
/// middle may keep the first lines of a batch without the rest: each line stands on its
/// own (a coupon kept without the others of its batch is answered `Duplicate` when the
/// batch is delivered again), so no event needs another to be applied.
pub(crate) fn append(file: &mut File, events: &[Event]) -> Result<()> {
    let mut bytes = Vec::new();
    for event in events {
        serde_json::to_writer(&mut bytes, event)
            .map_err(|error| Error::backend(BACKEND, "encoding an event", Some(error.into())))?;
        bytes.push(b'\n');
    }
    file.write_all(&bytes)
        .and_then(|()| file.sync_data())
        .map_err(|error| {
            Error::outcome_unknown(BACKEND, format!("appending to the log: {error}"), None)
        })
}

fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| io_error("syncing the folder of", path, error))
}

fn io_error(doing: &str, path: &Path, error: std::io::Error) -> Error {
    Error::unavailable(
        BACKEND,
        format!("{doing} {}: {error}", path.display()),
        Some(error.into()),
    )
}
