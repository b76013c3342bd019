//! The profile store: `<data>/vessel/NAME.ron`, the VM's own files (disks created for it, saved
//! states, the last screen's thumbnail) in `<data>/vessel/NAME/`.
//!
//! `<data>` is `$XDG_DATA_HOME`, else `$HOME/.local/share` (XDG Base Directory spec).

use std::path::{Path, PathBuf};

use super::{Problem, Profile, ProfileError};

pub struct Store {
    root: PathBuf,
}

/// Result of [`Store::list`]: every readable profile, and an error for each file that is not.
/// One broken file never hides the others.
#[derive(Debug, Default)]
pub struct Listing {
    pub profiles: Vec<(PathBuf, Profile)>,
    pub errors: Vec<ProfileError>,
}

fn io(file: &Path) -> impl FnOnce(std::io::Error) -> ProfileError + '_ {
    move |source| ProfileError::Io { file: file.to_path_buf(), source }
}

impl Store {
    /// The store in the user's XDG data directory (created if missing).
    pub fn open_default() -> Result<Store, ProfileError> {
        let data = match std::env::var_os("XDG_DATA_HOME").filter(|v| Path::new(v).is_absolute()) {
            Some(d) => PathBuf::from(d),
            None => {
                let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(ProfileError::NoDataDir)?;
                PathBuf::from(home).join(".local/share")
            }
        };
        Store::open(data.join("vessel"))
    }

    /// A store in `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, ProfileError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the profile named `name` is (or would be) kept.
    pub fn profile_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.ron"))
    }

    /// The directory for this VM's own files (disks, saved states, thumbnail).
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Directory of saved machine states (`savevm NAME` -> `<vm_dir>/states/NAME.vmstate`).
    pub fn states_dir(&self, name: &str) -> PathBuf {
        self.vm_dir(name).join("states")
    }

    /// A path from a profile, made absolute (relative paths are relative to the store).
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.root.join(p)
    }

    /// Every `*.ron` file in the store, sorted by name.
    pub fn list(&self) -> Listing {
        let mut out = Listing::default();
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) => {
                out.errors.push(ProfileError::Io { file: self.root.clone(), source: e });
                return out;
            }
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "ron") && p.is_file())
            .collect();
        files.sort();
        for f in files {
            match self.load_file(&f) {
                Ok(p) => out.profiles.push((f, p)),
                Err(e) => out.errors.push(e),
            }
        }
        out
    }

    fn load_file(&self, f: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(f).map_err(io(f))?;
        let p = Profile::parse(&text, f)?;
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if p.name != stem {
            return Err(ProfileError::Invalid {
                file: f.to_path_buf(),
                field: "name".into(),
                message: format!("{:?} differs from the file name {stem:?}", p.name),
            });
        }
        Ok(p)
    }

    pub fn load(&self, name: &str) -> Result<Profile, ProfileError> {
        let f = self.profile_path(name);
        if !super::valid_name(name) || !f.exists() {
            return Err(ProfileError::NotFound(name.to_string()));
        }
        self.load_file(&f)
    }

    /// Write (create or replace) a profile atomically.
    pub fn save(&self, p: &Profile) -> Result<PathBuf, ProfileError> {
        let f = self.profile_path(&p.name);
        p.validate(&f)?;
        let tmp = self.root.join(format!(".{}.ron.tmp", p.name));
        std::fs::write(&tmp, p.to_ron()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &f).map_err(io(&f))?;
        Ok(f)
    }

    /// Save a new profile; refuses to overwrite an existing one.
    pub fn create(&self, p: &Profile) -> Result<PathBuf, ProfileError> {
        if self.profile_path(&p.name).exists() {
            return Err(ProfileError::Exists(p.name.clone()));
        }
        self.save(p)
    }

    /// Delete a profile; with `files`, also its VM directory (disks created for it, states).
    pub fn delete(&self, name: &str, files: bool) -> Result<(), ProfileError> {
        let f = self.profile_path(name);
        if !super::valid_name(name) || !f.exists() {
            return Err(ProfileError::NotFound(name.to_string()));
        }
        std::fs::remove_file(&f).map_err(io(&f))?;
        let d = self.vm_dir(name);
        if files && d.is_dir() {
            std::fs::remove_dir_all(&d).map_err(io(&d))?;
        }
        Ok(())
    }

    /// Missing files of a profile (see [`Profile::problems`]).
    pub fn problems(&self, p: &Profile) -> Vec<Problem> {
        p.problems(&self.root)
    }
}
