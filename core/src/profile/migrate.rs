//! Reading profiles of any schema version this build knows, with precise error locations.
//!
//! History:
//! - 1: the first format (flat QEMU-like fields: `os` as a string, `memory_mb`, one `hda`,
//!   `boot`).
//! - 2: `os_type` enum, `memory_mib`, a list of `disks` with format and interface, device
//!   choices (`sound`, `network`, `vga`), `full_screen`.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{Disk, DiskFormat, DiskInterface, OsType, Profile, ProfileError, SCHEMA_VERSION};

/// Only the version, whatever else the file holds.
#[derive(Deserialize)]
struct Probe {
    /// 0 when missing.
    #[serde(default)]
    schema_version: u32,
}

/// Schema 1.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileV1 {
    #[allow(dead_code)]
    schema_version: u32,
    name: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    cpus: Option<u16>,
    memory_mb: u32,
    #[serde(default)]
    hda: Option<PathBuf>,
    #[serde(default)]
    cdrom: Option<PathBuf>,
    #[serde(default)]
    boot: Option<String>,
    #[serde(default)]
    localtime: bool,
}

fn from_v1(old: ProfileV1) -> Profile {
    let os_type = match old.os.to_ascii_lowercase().as_str() {
        "linux" => OsType::Linux,
        "dos" | "msdos" | "freedos" => OsType::Dos,
        "win95" | "win98" | "win9x" | "windows" => OsType::Windows9x,
        _ => OsType::Other,
    };
    let disks = old
        .hda
        .into_iter()
        .map(|path| Disk {
            format: if path.extension().is_some_and(|e| e == "qcow2") { DiskFormat::Qcow2 } else { DiskFormat::Raw },
            interface: DiskInterface::Ide,
            path,
            read_only: false,
            size_mib: None,
        })
        .collect();
    Profile {
        schema_version: SCHEMA_VERSION,
        name: old.name,
        os_type,
        cpus: old.cpus.unwrap_or(1),
        memory_mib: old.memory_mb,
        disks,
        cdrom: old.cdrom,
        boot_order: old.boot.unwrap_or_else(|| "cd".into()),
        localtime: old.localtime,
        ..Profile::default()
    }
}

fn error_at(file: &Path, e: ron::error::SpannedError, field: String) -> ProfileError {
    ProfileError::Parse {
        file: file.to_path_buf(),
        line: e.span.start.line,
        column: e.span.start.col,
        field,
        message: e.code.to_string(),
    }
}

/// Deserialize `T`, reporting the field path (`disks[0].format`) and position of any error.
fn parse_tracked<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ProfileError> {
    let mut de = ron::de::Deserializer::from_str(text).map_err(|e| error_at(file, e, "(file)".into()))?;
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => {
            de.end().map_err(|e| error_at(file, de.span_error(e), "(after the profile)".into()))?;
            Ok(v)
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = if path == "." { "(profile)".to_string() } else { path };
            Err(error_at(file, de.span_error(inner), field))
        }
    }
}

/// Parse a profile of any known schema version into the current one.
pub(super) fn parse_any(text: &str, file: &Path) -> Result<Profile, ProfileError> {
    let version = match ron::from_str::<Probe>(text) {
        Ok(p) => Some(p.schema_version).filter(|&v| v != 0),
        // broken syntax: the full parse below reports it with its location
        Err(_) => Some(SCHEMA_VERSION),
    };
    match version {
        None => Err(ProfileError::Invalid {
            file: file.to_path_buf(),
            field: "schema_version".into(),
            message: format!("missing (this build writes {SCHEMA_VERSION})"),
        }),
        Some(v) if v > SCHEMA_VERSION => Err(ProfileError::Newer { file: file.to_path_buf(), version: v }),
        Some(1) => Ok(from_v1(parse_tracked::<ProfileV1>(text, file)?)),
        Some(SCHEMA_VERSION) => parse_tracked::<Profile>(text, file),
        Some(v) => Err(ProfileError::Invalid {
            file: file.to_path_buf(),
            field: "schema_version".into(),
            message: format!("{v} is not a schema version Vessel ever wrote"),
        }),
    }
}
