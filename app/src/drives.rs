//! `vessel run` disk flags, QEMU's spellings: `-hda/-hdb/-hdc/-hdd FILE`, `-cdrom FILE`,
//! `-drive file=F[,format=raw|qcow2|...][,if=ide][,index=N|bus=B,unit=U][,media=disk|cdrom]
//! [,snapshot=on][,readonly=on]` and the global `-snapshot`, turned into drives of the PIIX3 IDE.
//!
//! As in QEMU: `-hda`..`-hdd` are indexes 0..3, `-cdrom` is index 2 (ide1-cd0); a `-drive`
//! without index takes the first free one; two drives on one index are an error. Formats are
//! probed when not given. `snapshot=on` opens the image read-only under a temporary overlay.
//! CD-ROMs are always read-only; an IDE hard disk cannot be read-only (QEMU refuses it too).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use vessel_core::block::{open_image, overlay::temporary_overlay, probe_format};
use vessel_machines::ide::{Medium, PiixIde};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Disk,
    Cdrom,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveOpt {
    pub file: Option<PathBuf>,
    pub format: Option<String>,
    pub index: Option<usize>,
    pub media: MediaKind,
    pub snapshot: bool,
    pub read_only: bool,
    /// The flag as the user wrote it, for error messages.
    pub origin: String,
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => bail!("{key}={v}: expected on or off"),
    }
}

/// Split QEMU option syntax: `a=1,b=x,,y` (a doubled comma is a literal comma).
pub(crate) fn split_opts(spec: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                parts.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

/// Parse one `-drive` argument.
pub fn parse_drive(spec: &str) -> Result<DriveOpt> {
    let origin = format!("-drive {spec}");
    let mut d = DriveOpt { file: None, format: None, index: None, media: MediaKind::Disk, snapshot: false, read_only: false, origin: origin.clone() };
    let (mut bus, mut unit) = (None, None);
    for part in split_opts(spec) {
        if part.is_empty() {
            continue;
        }
        let Some((key, value)) = part.split_once('=') else {
            bail!("{origin}: option '{part}' needs a value (key=value)");
        };
        let num = |v: &str| -> Result<usize> { v.parse().with_context(|| format!("{origin}: {key}={v} is not a number")) };
        match key {
            "file" => d.file = Some(PathBuf::from(value)),
            "format" => d.format = Some(value.to_string()),
            "if" => {
                if value != "ide" {
                    bail!("{origin}: if={value} is not supported (only if=ide)");
                }
            }
            "index" => d.index = Some(num(value)?),
            "bus" => bus = Some(num(value)?),
            "unit" => unit = Some(num(value)?),
            "media" => {
                d.media = match value {
                    "disk" => MediaKind::Disk,
                    "cdrom" => MediaKind::Cdrom,
                    _ => bail!("{origin}: media={value}: expected disk or cdrom"),
                }
            }
            "snapshot" => d.snapshot = parse_bool(key, value).with_context(|| origin.clone())?,
            "readonly" => d.read_only = parse_bool(key, value).with_context(|| origin.clone())?,
            // host cache modes and AIO back ends: accepted, the block layer has one behaviour
            "cache" | "aio" | "id" | "discard" | "werror" | "rerror" => {}
            _ => bail!("{origin}: unknown option '{key}'"),
        }
    }
    if let Some(u) = unit {
        if u > 1 {
            bail!("{origin}: unit={u}: an IDE bus has units 0 and 1");
        }
        let b = bus.unwrap_or(0);
        if d.index.is_some() {
            bail!("{origin}: index cannot be used with bus and unit");
        }
        d.index = Some(b * 2 + u);
    } else if let Some(b) = bus {
        if d.index.is_some() {
            bail!("{origin}: index cannot be used with bus and unit");
        }
        d.index = Some(b * 2);
    }
    if let Some(i) = d.index {
        if i > 3 {
            bail!("{origin}: index={i}: the IDE controller has indexes 0 to 3");
        }
    }
    if d.file.is_none() && d.media == MediaKind::Disk {
        bail!("{origin}: a hard disk needs file=");
    }
    Ok(d)
}

/// Every drive the flags ask for, with indexes assigned.
pub fn drive_list(hd: [Option<&PathBuf>; 4], cdrom: Option<&PathBuf>, drives: &[String], snapshot_all: bool) -> Result<Vec<(usize, DriveOpt)>> {
    let mut fixed: Vec<DriveOpt> = Vec::new();
    for (i, f) in hd.iter().enumerate() {
        if let Some(f) = f {
            let flag = ["-hda", "-hdb", "-hdc", "-hdd"][i];
            fixed.push(DriveOpt { file: Some((*f).clone()), format: None, index: Some(i), media: MediaKind::Disk, snapshot: false, read_only: false, origin: format!("{flag} {}", f.display()) });
        }
    }
    if let Some(f) = cdrom {
        fixed.push(DriveOpt { file: Some(f.clone()), format: None, index: Some(2), media: MediaKind::Cdrom, snapshot: false, read_only: true, origin: format!("-cdrom {}", f.display()) });
    }
    for s in drives {
        fixed.push(parse_drive(s)?);
    }
    let mut slots: [Option<DriveOpt>; 4] = Default::default();
    let mut later = Vec::new();
    for d in fixed {
        match d.index {
            Some(i) => {
                if let Some(prev) = &slots[i] {
                    bail!("{}: drive index {i} is already used by {}", d.origin, prev.origin);
                }
                slots[i] = Some(d);
            }
            None => later.push(d),
        }
    }
    for d in later {
        let Some(i) = slots.iter().position(Option::is_none) else {
            bail!("{}: no free IDE position (there are 4)", d.origin);
        };
        slots[i] = Some(d);
    }
    Ok(slots
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| d.map(|mut d| {
            d.snapshot |= snapshot_all;
            (i, d)
        }))
        .collect())
}

fn open_medium(d: &DriveOpt) -> Result<Option<Medium>> {
    let Some(path) = &d.file else { return Ok(None) };
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let cd = d.media == MediaKind::Cdrom;
    let read_only = cd || d.read_only;
    let overlay = d.snapshot && !cd;
    let dev = open_image(path, d.format.as_deref(), read_only || overlay).with_context(|| d.origin.clone())?;
    let dev = if overlay { temporary_overlay(dev).with_context(|| format!("{}: snapshot overlay", d.origin))? } else { dev };
    let format = match &d.format {
        Some(f) => f.clone(),
        None => probe_format(path).map(|f| f.name().to_string()).unwrap_or_else(|_| "raw".into()),
    };
    Ok(Some(Medium { dev, path: path.clone(), format, read_only, snapshot: overlay }))
}

/// The PIIX3 IDE controller with the drives the flags ask for.
pub fn build_ide(list: &[(usize, DriveOpt)]) -> Result<PiixIde> {
    let mut ide = PiixIde::new();
    for (i, d) in list {
        let medium = open_medium(d)?;
        match d.media {
            MediaKind::Cdrom => ide.attach_cdrom(*i, medium).with_context(|| d.origin.clone())?,
            MediaKind::Disk => {
                ide.attach_disk(*i, medium.expect("disk has a file")).with_context(|| d.origin.clone())?;
            }
        }
    }
    Ok(ide)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_options() {
        let d = parse_drive("file=a,,b.img,format=qcow2,if=ide,index=3,snapshot=on").unwrap();
        assert_eq!(d.file, Some(PathBuf::from("a,b.img")));
        assert_eq!(d.format.as_deref(), Some("qcow2"));
        assert_eq!(d.index, Some(3));
        assert!(d.snapshot);
        let d = parse_drive("file=x.iso,media=cdrom,bus=1,unit=1").unwrap();
        assert_eq!((d.index, d.media), (Some(3), MediaKind::Cdrom));
        assert!(parse_drive("file=x,foo=1").unwrap_err().to_string().contains("unknown option 'foo'"));
        assert!(parse_drive("file=x,if=scsi").is_err());
        assert!(parse_drive("file=x,index=4").is_err());
        assert!(parse_drive("file=x,snapshot=maybe").is_err());
        assert!(parse_drive("media=disk").is_err());
        assert!(parse_drive("media=cdrom,if=ide").unwrap().file.is_none());
    }

    #[test]
    fn indexes_as_qemu() {
        let a = PathBuf::from("a");
        let l = drive_list([Some(&a), None, None, None], Some(&a), &["file=b".into(), "file=c".into()], false).unwrap();
        let idx: Vec<usize> = l.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, [0, 1, 2, 3]);
        assert_eq!(l[2].1.media, MediaKind::Cdrom);
        let e = drive_list([None, None, Some(&a), None], Some(&a), &[], false).unwrap_err().to_string();
        assert!(e.contains("index 2 is already used by -hdc a"), "{e}");
        let e = drive_list([None; 4], None, &["file=b,index=0".into(), "file=c,index=0".into()], false).unwrap_err();
        assert!(e.to_string().contains("index 0"));
        let l = drive_list([Some(&a), None, None, None], None, &[], true).unwrap();
        assert!(l[0].1.snapshot, "-snapshot applies to every drive");
    }
}
