//! `savevm` / `loadvm` / `delvm`: a snapshot is the machine state *and* the disks, taken and
//! restored together.
//!
//! Restoring a machine state over disks that changed since it was saved would hand the guest a
//! filesystem that does not match its caches (it would corrupt it), so, as in QEMU:
//!
//! - `savevm NAME` requires every writable disk to be a qcow2 image and creates an internal qcow2
//!   snapshot `NAME` in each (replacing an older one of that name). Read-only drives (CD-ROMs,
//!   read-only disks) cannot change and are skipped. A writable disk in another format makes
//!   savevm fail *before* anything is written, naming the drive.
//! - The machine state ([`Machine::save_state`]: CPU, devices, RAM) goes to `NAME.vmstate` in the
//!   VM's state directory ([`super::VmOptions::state_dir`]) with a small `NAME.meta` (RON) that
//!   records when and which disks were snapshotted. QEMU keeps the state inside the qcow2 file;
//!   a separate file also works for machines without disks (SeaBIOS, `-kernel` guests).
//! - `loadvm NAME` checks first that the state file exists and that every writable disk has a
//!   snapshot `NAME`, then reverts each disk to it and restores the machine state.
//! - `delvm NAME` deletes the disk snapshots and the state files.
//!
//! Order for durability (savevm): flush the machine (disk write caches included), write the
//! state to a temporary file and fsync it, snapshot the disks (each qcow2 snapshot is itself
//! crash-safe), then rename the state file into place and write the metadata. If a disk
//! snapshot fails, those already taken are deleted again and the temporary file removed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Machine, VmDisk, VmError};

/// One saved snapshot, as `info snapshots` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    pub name: String,
    /// Seconds since 1970 (UTC) when it was taken.
    pub date_secs: u64,
    /// The guest's virtual clock at that moment.
    pub virtual_ns: u64,
    /// Size of the machine state file in bytes.
    pub state_size: u64,
    /// Drives that have a qcow2 snapshot of this name (`device` names).
    pub disks: Vec<String>,
}

fn check_name(name: &str) -> Result<(), VmError> {
    if name.is_empty()
        || name.len() > 128
        || name.starts_with('.')
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+@".contains(c))
    {
        return Err(VmError::Failed(format!(
            "invalid snapshot name {name:?}: use letters, digits and - _ . + @ (at most 128)"
        )));
    }
    Ok(())
}

fn state_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.vmstate"))
}

fn meta_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.meta"))
}

/// The writable disks, each of which must be able to snapshot.
fn writable_qcow2(disks: &[VmDisk]) -> Result<Vec<&VmDisk>, VmError> {
    let mut v = Vec::new();
    for d in disks {
        if d.image.read_only() {
            continue;
        }
        if d.image.as_qcow2().is_none() {
            return Err(VmError::Failed(format!(
                "drive {} ({}) cannot take snapshots: only qcow2 images can (convert it with \
                 `vessel img convert -O qcow2`, or attach it read-only or with snapshot=on)",
                d.device,
                d.path.display()
            )));
        }
        v.push(d);
    }
    Ok(v)
}

fn has_snapshot(d: &VmDisk, name: &str) -> bool {
    d.image.as_qcow2().is_some_and(|q| q.snapshots().iter().any(|s| s.name == name))
}

fn disk_err(d: &VmDisk, what: &str, e: impl std::fmt::Display) -> VmError {
    VmError::Failed(format!("drive {} ({}): {what}: {e}", d.device, d.path.display()))
}

fn no_dir() -> VmError {
    VmError::Unsupported("savevm without a state directory")
}

/// `savevm NAME`.
pub fn save<M: Machine + ?Sized>(m: &mut M, dir: Option<&Path>, name: &str) -> Result<SnapshotEntry, VmError> {
    check_name(name)?;
    let dir = dir.ok_or_else(no_dir)?;
    let all = m.disks();
    let disks = writable_qcow2(&all)?;
    std::fs::create_dir_all(dir).map_err(|e| VmError::io(dir, e))?;
    m.flush();
    let tmp = dir.join(format!(".{name}.vmstate.partial"));
    let write_state = |m: &mut M| -> Result<u64, VmError> {
        let f = std::fs::File::create(&tmp).map_err(|e| VmError::io(&tmp, e))?;
        let mut w = std::io::BufWriter::new(f);
        m.save_state(&mut w)?;
        use std::io::Write;
        w.flush().map_err(|e| VmError::io(&tmp, e))?;
        w.get_ref().sync_all().map_err(|e| VmError::io(&tmp, e))?;
        Ok(w.get_ref().metadata().map(|md| md.len()).unwrap_or(0))
    };
    let state_size = match write_state(m) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // the disks: replace an older snapshot of the same name, roll back on failure
    let mut taken: Vec<&VmDisk> = Vec::new();
    for d in &disks {
        let q = d.image.as_qcow2().expect("checked");
        let r = (|| {
            if has_snapshot(d, name) {
                q.snapshot_delete(name).map_err(|e| disk_err(d, "delete the old snapshot", e))?;
            }
            q.snapshot_create(name).map_err(|e| disk_err(d, "create the snapshot", e))
        })();
        if let Err(e) = r {
            for t in &taken {
                let _ = t.image.as_qcow2().expect("checked").snapshot_delete(name);
            }
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        taken.push(d);
    }
    let state = state_path(dir, name);
    std::fs::rename(&tmp, &state).map_err(|e| VmError::io(&state, e))?;
    let entry = SnapshotEntry {
        name: name.to_string(),
        date_secs: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        virtual_ns: m.virtual_ns(),
        state_size,
        disks: disks.iter().map(|d| d.device.clone()).collect(),
    };
    let meta = meta_path(dir, name);
    let text = ron::to_string(&entry).map_err(|e| VmError::State(e.to_string()))?;
    std::fs::write(&meta, text).map_err(|e| VmError::io(&meta, e))?;
    tracing::info!(name, state_size, disks = entry.disks.len(), "savevm");
    Ok(entry)
}

/// `loadvm NAME`.
pub fn load<M: Machine + ?Sized>(m: &mut M, dir: Option<&Path>, name: &str) -> Result<(), VmError> {
    check_name(name)?;
    let dir = dir.ok_or_else(no_dir)?;
    let state = state_path(dir, name);
    if !state.exists() {
        return Err(VmError::Failed(format!("no snapshot named '{name}' (no {})", state.display())));
    }
    let all = m.disks();
    let disks = writable_qcow2(&all)?;
    if let Some(d) = disks.iter().find(|d| !has_snapshot(d, name)) {
        return Err(VmError::Failed(format!(
            "drive {} ({}) has no snapshot '{name}': the machine state cannot be restored over a disk that \
             may have changed",
            d.device,
            d.path.display()
        )));
    }
    // read the whole state first: a truncated file fails here, before the disks change
    let data = std::fs::read(&state).map_err(|e| VmError::io(&state, e))?;
    m.flush();
    for d in &disks {
        d.image.as_qcow2().expect("checked").snapshot_apply(name).map_err(|e| disk_err(d, "revert to the snapshot", e))?;
    }
    m.restore_state(&mut data.as_slice()).map_err(|e| {
        VmError::Failed(format!(
            "the disks were reverted to '{name}' but the machine state could not be restored ({e}); \
             stop this VM and reboot it"
        ))
    })?;
    tracing::info!(name, "loadvm");
    Ok(())
}

/// `delvm NAME`.
pub fn delete<M: Machine + ?Sized>(m: &mut M, dir: Option<&Path>, name: &str) -> Result<(), VmError> {
    check_name(name)?;
    let dir = dir.ok_or_else(no_dir)?;
    let mut found = false;
    for d in m.disks() {
        if !d.image.read_only() && has_snapshot(&d, name) {
            d.image.as_qcow2().expect("has a snapshot").snapshot_delete(name).map_err(|e| disk_err(&d, "delete the snapshot", e))?;
            found = true;
        }
    }
    for p in [state_path(dir, name), meta_path(dir, name)] {
        match std::fs::remove_file(&p) {
            Ok(()) => found = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(VmError::io(&p, e)),
        }
    }
    if !found {
        return Err(VmError::Failed(format!("no snapshot named '{name}'")));
    }
    Ok(())
}

/// `info snapshots`: states in the directory, sorted by date.
pub fn list<M: Machine + ?Sized>(m: &M, dir: Option<&Path>) -> Result<Vec<SnapshotEntry>, VmError> {
    let Some(dir) = dir else { return Ok(Vec::new()) };
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(VmError::io(dir, e)),
    };
    let disks = m.disks();
    let mut v = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".vmstate")) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let state_size = e.metadata().map(|m| m.len()).unwrap_or(0);
        let meta: Option<SnapshotEntry> =
            std::fs::read_to_string(meta_path(dir, name)).ok().and_then(|t| ron::from_str(&t).ok());
        let (date_secs, virtual_ns) = meta.map(|m| (m.date_secs, m.virtual_ns)).unwrap_or((0, 0));
        v.push(SnapshotEntry {
            name: name.to_string(),
            date_secs,
            virtual_ns,
            state_size,
            disks: disks.iter().filter(|d| has_snapshot(d, name)).map(|d| d.device.clone()).collect(),
        });
    }
    v.sort_by(|a, b| (a.date_secs, &a.name).cmp(&(b.date_secs, &b.name)));
    Ok(v)
}
