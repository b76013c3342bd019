//! VM profiles: what a VM is (name, OS type, CPUs, memory, disks, media, devices), one RON file
//! each, in a [`Store`] under the XDG data directory.
//!
//! Format decisions:
//! - Every profile carries `schema_version`. Files written by older Vessel versions are migrated
//!   in memory when read (`migrate.rs`) and written back in the current schema on the next save;
//!   files from a *newer* Vessel are refused with a message saying so instead of being
//!   misread.
//! - Unknown fields are errors (`deny_unknown_fields`): a typo such as `memroy_mib` must not
//!   silently give the VM the default memory. Every other field has a default, so hand-written
//!   profiles can be short.
//! - Errors name the file, the line/column and the field path (`disks[0].format`), via
//!   `serde_path_to_error` on top of ron's spans.
//! - Relative paths (disks, CD images) are relative to the store directory, so a store can be
//!   moved as a whole; the VM's own files live in `<store>/<name>/`.

mod migrate;
mod store;
mod templates;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use store::{Listing, Store};
pub use templates::{template, templates, Template};

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 2;

/// Guest operating system family: picks defaults in the wizard (memory, disk size, devices).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OsType {
    /// Linux for i386/i686.
    Linux,
    /// MS-DOS, FreeDOS.
    Dos,
    /// Windows 95/98/ME era.
    Windows9x,
    #[default]
    Other,
}

impl OsType {
    pub const ALL: [OsType; 4] = [OsType::Linux, OsType::Dos, OsType::Windows9x, OsType::Other];

    /// English label; front ends translate it.
    pub fn label(self) -> &'static str {
        match self {
            OsType::Linux => "Linux (i386)",
            OsType::Dos => "DOS",
            OsType::Windows9x => "Windows 9x",
            OsType::Other => "Other",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskFormat {
    Raw,
    #[default]
    Qcow2,
}

impl DiskFormat {
    /// QEMU's name (`-drive format=`).
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskInterface {
    #[default]
    Ide,
    Floppy,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Disk {
    /// Image file (relative: to the store directory).
    pub path: PathBuf,
    pub format: DiskFormat,
    pub interface: DiskInterface,
    pub read_only: bool,
    /// Size to create the image with when it does not exist yet (templates, the wizard).
    pub size_mib: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SoundCard {
    #[default]
    None,
    /// Sound Blaster 16 (not emulated yet: `vessel run` refuses to start with it).
    Sb16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    #[default]
    None,
    /// User-mode NAT (not emulated yet).
    User,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Vga {
    /// Standard VGA (QEMU `-vga std` without the Bochs extensions is close).
    Std,
    /// Cirrus Logic GD5446 (QEMU's `pc` default).
    #[default]
    Cirrus,
}

/// One VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    pub schema_version: u32,
    pub name: String,
    pub os_type: OsType,
    pub cpus: u16,
    pub memory_mib: u32,
    pub disks: Vec<Disk>,
    /// CD-ROM image in the IDE secondary master (`None`: empty drive).
    pub cdrom: Option<PathBuf>,
    /// 1.44M floppy image in drive A.
    pub floppy: Option<PathBuf>,
    /// QEMU-style boot order letters: a floppy, c disk, d CD-ROM, n network.
    pub boot_order: String,
    pub sound: SoundCard,
    pub network: Network,
    pub vga: Vga,
    pub full_screen: bool,
    /// RTC in host local time (DOS and Windows expect it) instead of UTC.
    pub localtime: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            schema_version: SCHEMA_VERSION,
            name: String::new(),
            os_type: OsType::Other,
            cpus: 1,
            memory_mib: 128,
            disks: Vec::new(),
            cdrom: None,
            floppy: None,
            boot_order: "cd".into(),
            sound: SoundCard::None,
            network: Network::None,
            vga: Vga::Cirrus,
            full_screen: false,
            localtime: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{}:{line}:{column}: {field}: {message}", file.display())]
    Parse { file: PathBuf, line: usize, column: usize, field: String, message: String },
    #[error("{}: {field}: {message}", file.display())]
    Invalid { file: PathBuf, field: String, message: String },
    #[error("{}: schema_version {version} was written by a newer Vessel (this one reads up to {SCHEMA_VERSION})", file.display())]
    Newer { file: PathBuf, version: u32 },
    #[error("{}: {source}", file.display())]
    Io { file: PathBuf, source: std::io::Error },
    #[error("no profile named {0:?}")]
    NotFound(String),
    #[error("a profile named {0:?} already exists")]
    Exists(String),
    #[error("no data directory: neither XDG_DATA_HOME nor HOME is set")]
    NoDataDir,
}

impl ProfileError {
    /// The profile file the error is about, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ProfileError::Parse { file, .. }
            | ProfileError::Invalid { file, .. }
            | ProfileError::Newer { file, .. }
            | ProfileError::Io { file, .. } => Some(file),
            _ => None,
        }
    }
}

/// Something wrong with a profile that does not stop it from being listed or edited, e.g. a disk
/// image that is missing (the manager shows it; `vessel run` refuses to start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl Profile {
    /// A new profile from a template.
    pub fn from_template(t: &Template, name: &str) -> Profile {
        let mut p = t.profile.clone();
        p.name = name.to_string();
        for d in &mut p.disks {
            d.path = PathBuf::from(d.path.to_string_lossy().replace("{name}", name));
        }
        p
    }

    /// Parse RON text read from `file` (used only in messages), migrating older schemas.
    pub fn parse(text: &str, file: &Path) -> Result<Profile, ProfileError> {
        let p = migrate::parse_any(text, file)?;
        p.validate(file)?;
        Ok(p)
    }

    /// RON text in the current schema.
    pub fn to_ron(&self) -> String {
        let mut p = self.clone();
        p.schema_version = SCHEMA_VERSION;
        let cfg = ron::ser::PrettyConfig::new().struct_names(true);
        let mut s = ron::ser::to_string_pretty(&p, cfg).expect("profiles always serialize");
        s.push('\n');
        s
    }

    /// Value checks serde cannot express.
    pub fn validate(&self, file: &Path) -> Result<(), ProfileError> {
        let bad = |field: &str, message: String| {
            Err(ProfileError::Invalid { file: file.to_path_buf(), field: field.into(), message })
        };
        if !valid_name(&self.name) {
            return bad("name", format!("{:?} is not a usable VM name (1-64 characters, no '/', not starting with '.')", self.name));
        }
        if !(1..=16).contains(&self.cpus) {
            return bad("cpus", format!("{} (must be 1 to 16)", self.cpus));
        }
        if !(2..=3584).contains(&self.memory_mib) {
            return bad("memory_mib", format!("{} (must be 2 to 3584 MiB)", self.memory_mib));
        }
        if let Some(c) = self.boot_order.chars().find(|c| !"acdn".contains(*c)) {
            return bad("boot_order", format!("{c:?} is not a boot device (a floppy, c disk, d CD-ROM, n network)"));
        }
        for (i, d) in self.disks.iter().enumerate() {
            if d.path.as_os_str().is_empty() {
                return bad(&format!("disks[{i}].path"), "empty".into());
            }
        }
        Ok(())
    }

    /// Files the profile refers to that do not exist (relative paths resolved against `base`).
    /// Disks with `size_mib` are not reported: they are created on first start.
    pub fn problems(&self, base: &Path) -> Vec<Problem> {
        let mut v = Vec::new();
        for (i, d) in self.disks.iter().enumerate() {
            let p = base.join(&d.path);
            if !p.exists() && d.size_mib.is_none() {
                v.push(Problem { field: format!("disks[{i}].path"), message: format!("{} does not exist", p.display()) });
            }
        }
        for (field, f) in [("cdrom", &self.cdrom), ("floppy", &self.floppy)] {
            if let Some(f) = f {
                let p = base.join(f);
                if !p.exists() {
                    v.push(Problem { field: field.into(), message: format!("{} does not exist", p.display()) });
                }
            }
        }
        v
    }
}

/// VM names double as file names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 64
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.trim() == name
}

#[cfg(test)]
mod tests;
