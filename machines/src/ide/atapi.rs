//! ATAPI CD-ROM: the SCSI/MMC packet commands a BIOS, GRUB and Linux's sr/cdrom drivers send,
//! 2048-byte sectors from an ISO image, sense data, tray and lock state and media events.
//!
//! [`Cdrom::command`] decodes one 12-byte packet into an [`Action`]: data to return (already cut
//! to the allocation length), sectors to read from the image (done by the I/O worker), success
//! without data, or a CHECK CONDITION with sense. The byte-count-limit / interrupt-reason
//! protocol and DMA are the channel's (`channel.rs`).
//!
//! Media change, as QEMU reports it (so guests that only look at sense codes and guests that poll
//! GET EVENT STATUS NOTIFICATION both see it): after a medium is inserted the next command that
//! is not allowed during a unit attention fails once with NOT READY / MEDIUM NOT PRESENT, the one
//! after that with UNIT ATTENTION / MEDIUM MAY HAVE CHANGED (which stays until REQUEST SENSE
//! reads it), and the media event class reports NEW MEDIA once.

use serde::{Deserialize, Serialize};

pub const CD_SECTOR: usize = 2048;
/// More sectors than fit on an 80-minute CD: the medium is reported as a DVD.
const CD_MAX_SECTORS: u64 = 80 * 60 * 75;

pub mod sense {
    pub const NO_SENSE: u8 = 0;
    pub const NOT_READY: u8 = 2;
    pub const ILLEGAL_REQUEST: u8 = 5;
    pub const UNIT_ATTENTION: u8 = 6;
    pub const ASC_INVALID_OPCODE: u8 = 0x20;
    pub const ASC_LBA_OUT_OF_RANGE: u8 = 0x21;
    pub const ASC_INVALID_FIELD: u8 = 0x24;
    pub const ASC_MEDIUM_MAY_HAVE_CHANGED: u8 = 0x28;
    pub const ASC_SAVING_NOT_SUPPORTED: u8 = 0x39;
    pub const ASC_MEDIUM_NOT_PRESENT: u8 = 0x3A;
    pub const ASC_REMOVAL_PREVENTED: u8 = 0x53;
}
use sense::*;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

/// What a packet asks the channel to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Return this data (data-in phase).
    Data(Vec<u8>),
    /// Read `count` 2048-byte sectors from `lba` of the medium and return them.
    Read { lba: u64, count: u64 },
    /// Success, no data.
    Ok,
    /// CHECK CONDITION; the sense is already recorded.
    Check,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cdrom {
    pub sense: Sense,
    pub tray_open: bool,
    pub locked: bool,
    /// Media-change sequence: 0 none, 1 report NOT READY next, 2 report UNIT ATTENTION next.
    pub changed: u8,
    pub event_new_media: bool,
    pub event_eject_request: bool,
}

fn be16(b: &[u8]) -> usize {
    u16::from_be_bytes([b[0], b[1]]) as usize
}
fn be32(b: &[u8]) -> u64 {
    u32::from_be_bytes(b[..4].try_into().unwrap()) as u64
}

fn msf(lba: u64) -> [u8; 3] {
    let l = lba + 150;
    [(l / (75 * 60)) as u8, ((l / 75) % 60) as u8, (l % 75) as u8]
}

/// A TOC address field: LBA, or 0 + M:S:F.
fn addr(out: &mut Vec<u8>, lba: u64, use_msf: bool) {
    if use_msf {
        out.push(0);
        out.extend_from_slice(&msf(lba));
    } else {
        out.extend_from_slice(&(lba as u32).to_be_bytes());
    }
}

fn cut(mut v: Vec<u8>, alloc: usize) -> Action {
    v.truncate(alloc);
    Action::Data(v)
}

/// Commands that may run while a unit attention is pending.
fn allowed_during_ua(op: u8) -> bool {
    matches!(op, 0x03 | 0x12 | 0x46 | 0x4A)
}

/// Commands that need a medium in the closed tray.
fn needs_medium(op: u8) -> bool {
    matches!(op, 0x00 | 0x25 | 0x28 | 0x2B | 0x43 | 0x51 | 0xA8 | 0xBE)
}

pub const INQUIRY_VENDOR: &str = "QEMU";

impl Cdrom {
    fn check(&mut self, key: u8, asc: u8, ascq: u8) -> Action {
        self.sense = Sense { key, asc, ascq };
        Action::Check
    }

    fn not_present(&mut self) -> Action {
        let ascq = if self.tray_open { 2 } else { 1 };
        self.check(NOT_READY, ASC_MEDIUM_NOT_PRESENT, ascq)
    }

    /// A medium was inserted (monitor `change`).
    pub fn media_inserted(&mut self) {
        self.tray_open = false;
        self.changed = 1;
        self.event_new_media = true;
        self.event_eject_request = false;
    }

    /// The medium was taken out (monitor `eject`).
    pub fn media_removed(&mut self) {
        self.tray_open = true;
        self.changed = 0;
        self.event_new_media = false;
    }

    /// Decode one packet. `sectors`: the medium's size in 2048-byte sectors, `None` when there
    /// is no medium (the tray state is this struct's).
    pub fn command(&mut self, cdb: &[u8; 12], sectors: Option<u64>, model: &str) -> Action {
        let op = cdb[0];
        let present = if self.tray_open { None } else { sectors };
        if self.sense.key == UNIT_ATTENTION && !allowed_during_ua(op) {
            return Action::Check;
        }
        if !allowed_during_ua(op) && present.is_some() && self.changed != 0 {
            if self.changed == 1 {
                self.changed = 2;
                return self.check(NOT_READY, ASC_MEDIUM_NOT_PRESENT, 1);
            }
            self.changed = 0;
            return self.check(UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED, 0);
        }
        if needs_medium(op) && present.is_none() {
            return self.not_present();
        }
        let total = present.unwrap_or(0);
        let action = match op {
            0x00 => Action::Ok, // TEST UNIT READY
            0x03 => {
                // REQUEST SENSE (fixed format); reading the sense clears it
                let mut b = vec![0u8; 18];
                b[0] = 0x70;
                b[2] = self.sense.key;
                b[7] = 10;
                b[12] = self.sense.asc;
                b[13] = self.sense.ascq;
                self.sense = Sense::default();
                return cut(b, cdb[4] as usize);
            }
            0x12 => {
                // INQUIRY
                if cdb[1] & 1 != 0 {
                    return self.check(ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0);
                }
                let mut b = vec![0u8; 36];
                b[0] = 0x05; // CD/DVD device
                b[1] = 0x80; // removable
                b[2] = 0x00;
                b[3] = 0x21; // ATAPI, response data format 1
                b[4] = 31;
                let text = |s: &str, n: usize| s.bytes().chain(std::iter::repeat(b' ')).take(n).collect::<Vec<u8>>();
                b[8..16].copy_from_slice(&text(INQUIRY_VENDOR, 8));
                b[16..32].copy_from_slice(&text(model, 16));
                b[32..36].copy_from_slice(&text(super::ata::FIRMWARE, 4));
                cut(b, cdb[4] as usize)
            }
            0x1B => {
                // START STOP UNIT
                let (start, loej) = (cdb[4] & 1 != 0, cdb[4] & 2 != 0);
                if loej {
                    if !start && self.locked {
                        return self.check(NOT_READY, ASC_REMOVAL_PREVENTED, 2);
                    }
                    self.tray_open = !start;
                }
                Action::Ok
            }
            0x1E => {
                // PREVENT ALLOW MEDIUM REMOVAL
                self.locked = cdb[4] & 1 != 0;
                Action::Ok
            }
            0x25 => {
                // READ CAPACITY
                let mut b = Vec::with_capacity(8);
                b.extend_from_slice(&(total.saturating_sub(1) as u32).to_be_bytes());
                b.extend_from_slice(&(CD_SECTOR as u32).to_be_bytes());
                Action::Data(b)
            }
            0x28 | 0xA8 => {
                // READ(10) / READ(12)
                let lba = be32(&cdb[2..6]);
                let count = if op == 0x28 { be16(&cdb[7..9]) as u64 } else { be32(&cdb[6..10]) };
                self.read(lba, count, total)
            }
            0xBE => {
                // READ CD: user data only
                let lba = be32(&cdb[2..6]);
                let count = ((cdb[6] as u64) << 16) | ((cdb[7] as u64) << 8) | cdb[8] as u64;
                match cdb[9] & 0xF8 {
                    0x00 => Action::Ok,
                    0x10 => self.read(lba, count, total),
                    _ => self.check(ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0),
                }
            }
            0x2B => {
                // SEEK(10)
                if be32(&cdb[2..6]) >= total {
                    return self.check(ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
                }
                Action::Ok
            }
            0x1A | 0x5A => self.mode_sense(cdb),
            0x43 => self.read_toc(cdb, total),
            0x46 => self.get_configuration(cdb, present),
            0x4A => self.event_status(cdb, present.is_some()),
            0x51 => {
                // READ DISC INFORMATION (standard disc information only)
                if cdb[1] & 7 != 0 {
                    return self.check(ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0);
                }
                let mut b = vec![0u8; 34];
                b[1] = 32;
                b[2] = 0x0E; // last session complete, disc finalized
                b[3] = 1; // first track
                b[4] = 1; // sessions
                b[5] = 1; // first track in last session
                b[6] = 1; // last track in last session
                b[7] = 0x20; // unrestricted use
                b[8] = 0x00; // CD-ROM / DVD-ROM disc type
                cut(b, be16(&cdb[7..9]))
            }
            0xBD => {
                // MECHANISM STATUS: no changer
                let mut b = vec![0u8; 8];
                b[5] = 1;
                cut(b, be16(&cdb[8..10]))
            }
            0xBB => Action::Ok, // SET CD SPEED
            _ => {
                tracing::debug!(op, "ATAPI: unsupported packet command");
                return self.check(ILLEGAL_REQUEST, ASC_INVALID_OPCODE, 0);
            }
        };
        if action != Action::Check {
            self.sense = Sense::default();
        }
        action
    }

    fn read(&mut self, lba: u64, count: u64, total: u64) -> Action {
        if lba.checked_add(count).is_none_or(|end| end > total) {
            return self.check(ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
        }
        if count == 0 { Action::Ok } else { Action::Read { lba, count } }
    }

    fn mode_sense(&mut self, cdb: &[u8; 12]) -> Action {
        let ten = cdb[0] == 0x5A;
        let alloc = if ten { be16(&cdb[7..9]) } else { cdb[4] as usize };
        let (control, page) = (cdb[2] >> 6, cdb[2] & 0x3F);
        if control == 3 {
            return self.check(ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED, 0);
        }
        let changeable = control == 1;
        let mut pages = Vec::new();
        if page == 0x01 || page == 0x3F {
            // read/write error recovery
            let mut p = vec![0x01, 0x06, 0x00, 0x05, 0, 0, 0, 0];
            if changeable {
                p[2..].fill(0);
            }
            pages.extend(p);
        }
        if page == 0x2A || page == 0x3F {
            // CD/DVD capabilities and mechanical status
            let mut p = vec![0u8; 20];
            p[0] = 0x2A;
            p[1] = 0x12;
            if !changeable {
                p[2] = 0x3B; // reads CD-R, CD-RW, DVD-ROM, DVD-R, DVD-RAM
                p[4] = 0x71; // audio play, mode 2 form 1/2, multi-session
                p[5] = 0x60;
                p[6] = 0x01 | 0x08 | (1 << 5) | if self.locked { 0x02 } else { 0 }; // lock, eject, tray
                p[8..10].copy_from_slice(&704u16.to_be_bytes()); // 4x
                p[10..12].copy_from_slice(&2u16.to_be_bytes());
                p[12..14].copy_from_slice(&2048u16.to_be_bytes());
                p[14..16].copy_from_slice(&704u16.to_be_bytes());
            }
            pages.extend(p);
        }
        if pages.is_empty() {
            return self.check(ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0);
        }
        let mut b = if ten {
            let len = (6 + pages.len()) as u16;
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&len.to_be_bytes());
            h[2] = 0x70;
            h
        } else {
            vec![(3 + pages.len()) as u8, 0x70, 0, 0]
        };
        b.extend(pages);
        cut(b, alloc)
    }

    fn read_toc(&mut self, cdb: &[u8; 12], total: u64) -> Action {
        let use_msf = cdb[1] & 2 != 0;
        let format = match cdb[2] & 0x0F {
            0 => cdb[9] >> 6, // SFF-8020 placed the format in the control byte
            f => f,
        };
        let start_track = cdb[6];
        let alloc = be16(&cdb[7..9]);
        let mut b = vec![0u8, 0, 1, 1];
        match format {
            0 => {
                if start_track > 1 && start_track != 0xAA {
                    return self.check(ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0);
                }
                if start_track <= 1 {
                    b.extend_from_slice(&[0, 0x14, 1, 0]); // data track 1
                    addr(&mut b, 0, use_msf);
                }
                b.extend_from_slice(&[0, 0x16, 0xAA, 0]); // lead-out
                addr(&mut b, total, use_msf);
            }
            1 => {
                // session info: one session, first track 1 at LBA 0
                b.extend_from_slice(&[0, 0x14, 1, 0]);
                addr(&mut b, 0, use_msf);
            }
            2 => {
                // raw TOC: A0 (first track), A1 (last track), A2 (lead-out), track 1
                for (point, pmin) in [(0xA0u8, 1u8), (0xA1, 1)] {
                    b.extend_from_slice(&[1, 0x14, 0, point, 0, 0, 0, 0, pmin, 0, 0]);
                }
                b.extend_from_slice(&[1, 0x14, 0, 0xA2, 0, 0, 0]);
                addr(&mut b, total, use_msf);
                b.extend_from_slice(&[1, 0x14, 0, 1, 0, 0, 0]);
                addr(&mut b, 0, use_msf);
            }
            _ => return self.check(ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0),
        }
        let len = (b.len() - 2) as u16;
        b[0..2].copy_from_slice(&len.to_be_bytes());
        cut(b, alloc)
    }

    fn get_configuration(&mut self, cdb: &[u8; 12], present: Option<u64>) -> Action {
        let rt = cdb[1] & 3;
        let start = be16(&cdb[2..4]) as u16;
        let alloc = be16(&cdb[7..9]);
        let profile: u16 = match present {
            None => 0,
            Some(n) if n > CD_MAX_SECTORS => 0x0010,
            Some(_) => 0x0008,
        };
        let mut features: Vec<(u16, Vec<u8>)> = Vec::new();
        // profile list: DVD-ROM, CD-ROM
        let mut pl = vec![0x00, 0x00, 0x03, 8];
        for p in [0x0010u16, 0x0008] {
            pl.extend_from_slice(&p.to_be_bytes());
            pl.extend_from_slice(&[(p == profile) as u8, 0]);
        }
        features.push((0, pl));
        // core: ATAPI physical interface
        features.push((1, vec![0x00, 0x01, 0x0B, 8, 0, 0, 0, 2, 1, 0, 0, 0]));
        // removable medium: tray, eject, lock
        features.push((3, vec![0x00, 0x03, 0x03, 4, 0x29, 0, 0, 0]));
        if present.is_some() {
            // random readable, 2048-byte blocks
            features.push((0x10, vec![0x00, 0x10, 0x01, 8, 0, 0, 0x08, 0, 0, 1, 0, 0]));
        }
        let mut b = vec![0u8; 8];
        b[6..8].copy_from_slice(&profile.to_be_bytes());
        for (code, f) in features {
            let current = f[2] & 1 != 0;
            let keep = match rt {
                0 => code >= start,
                1 => code >= start && current,
                2 => code == start,
                _ => false,
            };
            if keep {
                b.extend(f);
            }
        }
        let len = (b.len() - 4) as u32;
        b[0..4].copy_from_slice(&len.to_be_bytes());
        cut(b, alloc)
    }

    fn event_status(&mut self, cdb: &[u8; 12], present: bool) -> Action {
        if cdb[1] & 1 == 0 {
            // asynchronous notification is not supported
            return self.check(ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0);
        }
        let classes = cdb[4];
        let alloc = be16(&cdb[7..9]);
        const MEDIA_CLASS: u8 = 1 << 4;
        let mut b = vec![0u8, 0, 0, MEDIA_CLASS];
        if classes & MEDIA_CLASS != 0 {
            b[2] = 4; // media class
            let code = if self.event_eject_request {
                1
            } else if self.event_new_media {
                2
            } else {
                0
            };
            let status = if self.tray_open { 1 } else if present { 2 } else { 0 };
            b.extend_from_slice(&[code, status, 0, 0]);
            self.event_eject_request = false;
            self.event_new_media = false;
        } else {
            b[2] = 0x80; // no event available
        }
        let len = (b.len() - 2) as u16;
        b[0..2].copy_from_slice(&len.to_be_bytes());
        cut(b, alloc)
    }
}
