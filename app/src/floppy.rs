//! Floppy drives from QEMU's flags: `-fda F`, `-fdb F` and
//! `-drive file=F,if=floppy[,index=N][,format=raw][,readonly=on][,snapshot=on]`.
//!
//! As in QEMU's `pc` machine the floppy controller is always there and drive A (`floppy0`) always
//! exists, empty unless an image is given; drive B exists when an image is given for it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use vessel_machines::fdc::{Fdc, Media};

/// One floppy drive from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloppySpec {
    pub unit: Option<usize>,
    pub path: PathBuf,
    pub format: Option<String>,
    pub read_only: bool,
    pub snapshot: bool,
}

/// `key=value` pairs of a `-drive` option (`,,` is a literal comma, as in QEMU).
pub fn drive_options(spec: &str) -> Vec<(String, String)> {
    crate::drives::split_opts(spec)
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => ("file".to_string(), p),
        })
        .collect()
}

/// Whether a `-drive` option is for the floppy controller (`if=floppy`).
pub fn is_floppy_drive(spec: &str) -> bool {
    drive_options(spec).iter().any(|(k, v)| k == "if" && v == "floppy")
}

fn on_off(key: &str, v: &str) -> Result<bool> {
    match v {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => bail!("-drive {key}={v}: expected on or off"),
    }
}

/// Parses an `if=floppy` `-drive` option.
pub fn parse_floppy_drive(spec: &str) -> Result<FloppySpec> {
    let mut s = FloppySpec { unit: None, path: PathBuf::new(), format: None, read_only: false, snapshot: false };
    for (k, v) in drive_options(spec) {
        match k.as_str() {
            "file" => s.path = PathBuf::from(v),
            "if" => {}
            "index" | "unit" => {
                let n: usize = v.parse().with_context(|| format!("-drive {spec}: bad {k}"))?;
                if n > 1 {
                    bail!("-drive {spec}: floppy {k} must be 0 or 1");
                }
                s.unit = Some(n);
            }
            "format" => s.format = Some(v),
            "readonly" => s.read_only = on_off(&k, &v)?,
            "snapshot" => s.snapshot = on_off(&k, &v)?,
            "media" if v == "disk" => {}
            "cache" | "aio" | "discard" | "werror" | "rerror" => {}
            _ => bail!("-drive {spec}: option {k}={v} is not supported for floppy drives"),
        }
    }
    if s.path.as_os_str().is_empty() {
        bail!("-drive {spec}: a floppy drive needs file=IMAGE");
    }
    Ok(s)
}

/// The floppy drives of a command line, by unit. `snapshot`: QEMU's global `-snapshot`.
pub fn floppy_specs(
    fda: Option<&PathBuf>,
    fdb: Option<&PathBuf>,
    drives: &[String],
    snapshot: bool,
) -> Result<[Option<FloppySpec>; 2]> {
    let mut units: [Option<FloppySpec>; 2] = [None, None];
    let plain = |p: &PathBuf, u| FloppySpec { unit: Some(u), path: p.clone(), format: None, read_only: false, snapshot: false };
    let mut all: Vec<FloppySpec> = Vec::new();
    all.extend(fda.map(|p| plain(p, 0)));
    all.extend(fdb.map(|p| plain(p, 1)));
    for d in drives.iter().filter(|d| is_floppy_drive(d)) {
        all.push(parse_floppy_drive(d)?);
    }
    for s in all {
        let unit = match s.unit {
            Some(u) => u,
            None => units.iter().position(|u| u.is_none()).context("more than two floppy drives")?,
        };
        if units[unit].is_some() {
            bail!("floppy drive {unit} ({}) is given twice", if unit == 0 { "-fda" } else { "-fdb" });
        }
        units[unit] = Some(FloppySpec { snapshot: s.snapshot || snapshot, ..s });
    }
    Ok(units)
}

/// The controller with its drives: `floppy0` always, `floppy1` when given.
pub fn build_fdc(units: &[Option<FloppySpec>; 2]) -> Result<Fdc> {
    let mut fdc = Fdc::new();
    for (unit, spec) in units.iter().enumerate() {
        let media = match spec {
            Some(s) => {
                if !s.path.exists() {
                    bail!("floppy image {}: no such file", s.path.display());
                }
                Some(
                    Media::open_with(&s.path, s.format.as_deref(), s.read_only, s.snapshot)
                        .with_context(|| format!("floppy drive {unit}"))?,
                )
            }
            None if unit == 0 => None,
            None => continue,
        };
        fdc.attach(unit, media);
    }
    Ok(fdc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_option_parsing() {
        assert!(is_floppy_drive("file=a.img,if=floppy"));
        assert!(!is_floppy_drive("file=a.img,if=ide,format=raw"));
        let s = parse_floppy_drive("file=a,,b.img,if=floppy,index=1,format=raw,readonly=on").unwrap();
        assert_eq!(s.path, PathBuf::from("a,b.img"));
        assert_eq!(s.unit, Some(1));
        assert_eq!(s.format.as_deref(), Some("raw"));
        assert!(s.read_only);
        assert!(parse_floppy_drive("file=a.img,if=floppy,index=2").is_err());
        assert!(parse_floppy_drive("if=floppy").is_err());
        assert!(parse_floppy_drive("file=a.img,if=floppy,bogus=1").is_err());
    }

    #[test]
    fn units_and_conflicts() {
        let a = PathBuf::from("a.img");
        let u = floppy_specs(None, None, &["file=x.img,if=floppy".into(), "file=y.img,if=floppy".into()], false).unwrap();
        assert_eq!(u[0].as_ref().unwrap().path, PathBuf::from("x.img"));
        assert_eq!(u[1].as_ref().unwrap().path, PathBuf::from("y.img"));
        let u = floppy_specs(Some(&a), None, &["file=y.img,if=floppy".into()], true).unwrap();
        assert_eq!(u[1].as_ref().unwrap().path, PathBuf::from("y.img"));
        assert!(u[0].as_ref().unwrap().snapshot && u[1].as_ref().unwrap().snapshot, "-snapshot applies to floppies");
        assert!(floppy_specs(Some(&a), None, &["file=y.img,if=floppy,index=0".into()], false).is_err());
        let e = build_fdc(&floppy_specs(Some(&PathBuf::from("/nonexistent/f.img")), None, &[], false).unwrap()).err().unwrap();
        assert!(format!("{e:#}").contains("/nonexistent/f.img: no such file"), "{e:#}");
        let bad = std::env::temp_dir().join(format!("vessel-bad-floppy-{}.img", std::process::id()));
        std::fs::write(&bad, vec![0u8; 12345]).unwrap();
        let e = build_fdc(&floppy_specs(Some(&bad), None, &[], false).unwrap()).err().unwrap();
        assert!(format!("{e:#}").contains("12345 bytes is not a floppy image size"), "{e:#}");
        let _ = std::fs::remove_file(bad);
        let fdc = build_fdc(&[None, None]).unwrap();
        assert_eq!(fdc.cmos_drive_types(), 0x50, "empty drive A, as QEMU's default");
    }
}
