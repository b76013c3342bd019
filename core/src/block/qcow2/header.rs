//! The qcow2 header (version 2 and 3) and its extensions, as laid out in QEMU's
//! docs/interop/qcow2.txt. All fields are big-endian.
//!
//! Only the fields Vessel changes after creation are ever rewritten in place, each group in one
//! small write inside the first sector (QEMU relies on the same sector-atomicity):
//! `size` (24), `l1_size + l1_table_offset` (36..48), `refcount_table_offset + clusters` (48..60),
//! `nb_snapshots + snapshots_offset` (60..72). A whole-header rewrite happens only on create and
//! rebase.

use crate::block::be::*;

pub const MAGIC: &[u8; 4] = b"QFI\xfb";

pub const EXT_END: u32 = 0;
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
pub const EXT_FEATURE_TABLE: u32 = 0x6803_f857;

/// Incompatible feature bits.
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
/// Compatible feature bit: lazy refcounts.
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;

pub const OFF_SIZE: u64 = 24;
pub const OFF_L1: u64 = 36;
pub const OFF_REFCOUNT_TABLE: u64 = 48;
pub const OFF_SNAPSHOTS: u64 = 60;
pub const OFF_INCOMPAT: u64 = 72;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub kind: u32,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    pub compression_type: u8,
    /// Extensions other than the backing format, kept so that a rewrite preserves them.
    pub extensions: Vec<Extension>,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Parses the header from the first cluster of the file (`buf` holds at least the header,
    /// its extensions and the backing file name: the whole first cluster).
    pub fn parse(buf: &[u8]) -> Result<Header, String> {
        if buf.len() < 72 || &buf[0..4] != MAGIC {
            return Err("not a qcow2 image (bad magic)".into());
        }
        let version = be32(buf, 4);
        if version != 2 && version != 3 {
            return Err(format!("unsupported qcow2 version {version}"));
        }
        let mut h = Header {
            version,
            backing_file_offset: be64(buf, 8),
            backing_file_size: be32(buf, 16),
            cluster_bits: be32(buf, 20),
            size: be64(buf, 24),
            crypt_method: be32(buf, 32),
            l1_size: be32(buf, 36),
            l1_table_offset: be64(buf, 40),
            refcount_table_offset: be64(buf, 48),
            refcount_table_clusters: be32(buf, 56),
            nb_snapshots: be32(buf, 60),
            snapshots_offset: be64(buf, 64),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: 72,
            compression_type: 0,
            extensions: Vec::new(),
            backing_file: None,
            backing_format: None,
        };
        if !(9..=21).contains(&h.cluster_bits) {
            return Err(format!("unsupported cluster size 2^{}", h.cluster_bits));
        }
        if version == 3 {
            if buf.len() < 104 {
                return Err("truncated v3 header".into());
            }
            h.incompatible_features = be64(buf, 72);
            h.compatible_features = be64(buf, 80);
            h.autoclear_features = be64(buf, 88);
            h.refcount_order = be32(buf, 96);
            h.header_length = be32(buf, 100);
            if h.header_length < 104 || h.header_length as usize > buf.len() {
                return Err(format!("bad header length {}", h.header_length));
            }
            if h.header_length > 104 {
                h.compression_type = buf[104];
            }
            if h.refcount_order > 6 {
                return Err(format!("bad refcount order {}", h.refcount_order));
            }
        }
        let cs = h.cluster_size();
        for (what, off) in [("L1 table", h.l1_table_offset), ("refcount table", h.refcount_table_offset)] {
            if off == 0 || off % cs != 0 {
                return Err(format!("{what} offset {off:#x} is invalid"));
            }
        }
        if h.nb_snapshots > 0 && h.snapshots_offset % cs != 0 {
            return Err(format!("snapshot table offset {:#x} is invalid", h.snapshots_offset));
        }
        // Header extensions follow the header (v2: right after the 72 bytes).
        let mut off = h.header_length as usize;
        let end = if h.backing_file_offset != 0 { (h.backing_file_offset as usize).min(buf.len()) } else { buf.len() };
        while off + 8 <= end {
            let kind = be32(buf, off);
            let len = be32(buf, off + 4) as usize;
            off += 8;
            if kind == EXT_END {
                break;
            }
            if off + len > buf.len() {
                return Err("header extension runs past the first cluster".into());
            }
            let data = buf[off..off + len].to_vec();
            if kind == EXT_BACKING_FORMAT {
                h.backing_format = Some(String::from_utf8_lossy(&data).into_owned());
            } else {
                h.extensions.push(Extension { kind, data });
            }
            off += (len + 7) & !7;
        }
        if h.backing_file_offset != 0 {
            let (o, l) = (h.backing_file_offset as usize, h.backing_file_size as usize);
            if l > 1023 || o + l > buf.len() {
                return Err("backing file name is invalid".into());
            }
            h.backing_file = Some(String::from_utf8_lossy(&buf[o..o + l]).into_owned());
        }
        Ok(h)
    }

    /// Serializes the header, its extensions and the backing file name. Returns the bytes to
    /// write at offset 0 (must fit in the first cluster).
    pub fn serialize(&mut self) -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; if self.version == 3 { 112 } else { 72 }];
        if self.version == 3 {
            self.header_length = 112;
        } else {
            self.header_length = 72;
        }
        b[0..4].copy_from_slice(MAGIC);
        put32(&mut b, 4, self.version);
        put32(&mut b, 20, self.cluster_bits);
        put64(&mut b, 24, self.size);
        put32(&mut b, 32, self.crypt_method);
        put32(&mut b, 36, self.l1_size);
        put64(&mut b, 40, self.l1_table_offset);
        put64(&mut b, 48, self.refcount_table_offset);
        put32(&mut b, 56, self.refcount_table_clusters);
        put32(&mut b, 60, self.nb_snapshots);
        put64(&mut b, 64, self.snapshots_offset);
        if self.version == 3 {
            put64(&mut b, 72, self.incompatible_features);
            put64(&mut b, 80, self.compatible_features);
            put64(&mut b, 88, self.autoclear_features);
            put32(&mut b, 96, self.refcount_order);
            put32(&mut b, 100, self.header_length);
            b[104] = self.compression_type;
        }
        let ext = |kind: u32, data: &[u8], b: &mut Vec<u8>| {
            let mut e = [0u8; 8];
            put32(&mut e, 0, kind);
            put32(&mut e, 4, data.len() as u32);
            b.extend_from_slice(&e);
            b.extend_from_slice(data);
            while b.len() % 8 != 0 {
                b.push(0);
            }
        };
        if let Some(fmt) = &self.backing_format {
            ext(EXT_BACKING_FORMAT, fmt.as_bytes(), &mut b);
        }
        for e in &self.extensions {
            ext(e.kind, &e.data, &mut b);
        }
        ext(EXT_END, &[], &mut b);
        if let Some(name) = &self.backing_file {
            if name.len() > 1023 {
                return Err("backing file name is longer than 1023 bytes".into());
            }
            self.backing_file_offset = b.len() as u64;
            self.backing_file_size = name.len() as u32;
            b.extend_from_slice(name.as_bytes());
        } else {
            self.backing_file_offset = 0;
            self.backing_file_size = 0;
        }
        put64(&mut b, 8, self.backing_file_offset);
        put32(&mut b, 16, self.backing_file_size);
        if b.len() as u64 > self.cluster_size() {
            return Err("header and backing file name do not fit in the first cluster".into());
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut h = Header {
            version: 3,
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: 16,
            size: 1 << 30,
            crypt_method: 0,
            l1_size: 2,
            l1_table_offset: 0x30000,
            refcount_table_offset: 0x10000,
            refcount_table_clusters: 1,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: 112,
            compression_type: 0,
            extensions: vec![Extension { kind: 0x1234, data: vec![1, 2, 3] }],
            backing_file: Some("base.img".into()),
            backing_format: Some("raw".into()),
        };
        let mut b = h.serialize().unwrap();
        b.resize(65536, 0);
        let p = Header::parse(&b).unwrap();
        assert_eq!(p.backing_file.as_deref(), Some("base.img"));
        assert_eq!(p.backing_format.as_deref(), Some("raw"));
        assert_eq!(p.extensions, h.extensions);
        assert_eq!((p.size, p.l1_size, p.l1_table_offset), (1 << 30, 2, 0x30000));
    }
}
