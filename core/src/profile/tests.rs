use std::path::{Path, PathBuf};

use super::*;

/// A fresh directory under the system temp dir.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vessel-profile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn full_profile() -> Profile {
    Profile {
        schema_version: SCHEMA_VERSION,
        name: "Debian 12".into(),
        os_type: OsType::Linux,
        cpus: 2,
        memory_mib: 256,
        disks: vec![
            Disk { path: "Debian 12/disk0.qcow2".into(), format: DiskFormat::Qcow2, interface: DiskInterface::Ide, read_only: false, size_mib: Some(4096) },
            Disk { path: "/srv/images/data.img".into(), format: DiskFormat::Raw, interface: DiskInterface::Ide, read_only: true, size_mib: None },
        ],
        cdrom: Some("/srv/iso/debian.iso".into()),
        floppy: None,
        boot_order: "dc".into(),
        sound: SoundCard::Sb16,
        network: Network::User,
        vga: Vga::Std,
        full_screen: true,
        localtime: true,
    }
}

fn parse_err(text: &str) -> ProfileError {
    Profile::parse(text, Path::new("/p/vm.ron")).expect_err("must not parse")
}

/// (line, field) of a parse error.
fn where_(e: &ProfileError) -> (usize, String) {
    match e {
        ProfileError::Parse { file, line, field, .. } => {
            assert_eq!(file, Path::new("/p/vm.ron"), "error names the file");
            (*line, field.clone())
        }
        e => panic!("expected a parse error, got {e}"),
    }
}

#[test]
fn round_trip_through_text_and_store() {
    let p = full_profile();
    let text = p.to_ron();
    assert_eq!(Profile::parse(&text, Path::new("x.ron")).unwrap(), p);

    let store = Store::open(scratch("roundtrip")).unwrap();
    let f = store.create(&p).unwrap();
    assert_eq!(f, store.root().join("Debian 12.ron"));
    assert_eq!(store.load("Debian 12").unwrap(), p);
    assert!(matches!(store.create(&p), Err(ProfileError::Exists(_))));
    let mut q = p.clone();
    q.memory_mib = 64;
    store.save(&q).unwrap();
    assert_eq!(store.load("Debian 12").unwrap().memory_mib, 64);
    let l = store.list();
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    assert_eq!(l.profiles.len(), 1);
    store.delete("Debian 12", true).unwrap();
    assert!(matches!(store.load("Debian 12"), Err(ProfileError::NotFound(_))));
}

#[test]
fn short_profiles_take_defaults() {
    let p = Profile::parse("(schema_version: 2, name: \"tiny\")", Path::new("tiny.ron")).unwrap();
    assert_eq!(p, Profile { name: "tiny".into(), ..Profile::default() });
}

#[test]
fn syntax_error_names_file_and_line() {
    let text = "Profile(\n    schema_version: 2,\n    name: \"x\",\n    memory_mib: 64\n    cpus: 1,\n)\n";
    let e = parse_err(text);
    let (line, _) = where_(&e);
    assert!(line == 4 || line == 5, "line {line}: {e}");
    assert!(e.to_string().starts_with("/p/vm.ron:"), "{e}");
}

#[test]
fn wrong_type_names_the_field_and_line() {
    let text = "Profile(\n    schema_version: 2,\n    name: \"x\",\n    memory_mib: \"lots\",\n)\n";
    let e = parse_err(text);
    assert_eq!(where_(&e), (4, "memory_mib".into()), "{e}");
    let text = "Profile(\n  schema_version: 2,\n  name: \"x\",\n  disks: [\n    Disk(path: \"a.img\"),\n    Disk(path: \"b.img\", format: Vmdk),\n  ],\n)\n";
    let e = parse_err(text);
    assert_eq!(where_(&e), (6, "disks[1].format".into()), "{e}");
    assert!(e.to_string().contains("Vmdk"), "{e}");
}

#[test]
fn unknown_fields_are_errors_naming_the_field() {
    let text = "Profile(\n    schema_version: 2,\n    name: \"x\",\n    memroy_mib: 64,\n)\n";
    let e = parse_err(text);
    assert_eq!(where_(&e), (4, "memroy_mib".into()), "{e}");
    let text = "(schema_version: 2, name: \"x\",\n disks: [(path: \"a\", cache: \"none\")])";
    let e = parse_err(text);
    assert_eq!(where_(&e), (2, "disks[0].cache".into()), "{e}");
}

#[test]
fn invalid_values_name_the_field() {
    for (text, field) in [
        ("(schema_version: 2, name: \"x\", memory_mib: 1)", "memory_mib"),
        ("(schema_version: 2, name: \"x\", cpus: 0)", "cpus"),
        ("(schema_version: 2, name: \"a/b\")", "name"),
        ("(schema_version: 2, name: \"x\", boot_order: \"cz\")", "boot_order"),
        ("(name: \"x\")", "schema_version"),
    ] {
        match parse_err(text) {
            ProfileError::Invalid { field: f, file, .. } => {
                assert_eq!(f, field, "{text}");
                assert_eq!(file, Path::new("/p/vm.ron"));
            }
            e => panic!("{text}: {e}"),
        }
    }
}

#[test]
fn newer_schema_is_refused_not_misread() {
    let e = parse_err("(schema_version: 99, name: \"x\", hologram: true)");
    assert!(matches!(e, ProfileError::Newer { version: 99, .. }), "{e}");
}

#[test]
fn schema_1_migrates_forward() {
    let v1 = "// written by an early Vessel\n(\n    schema_version: 1,\n    name: \"old dos\",\n    os: \"dos\",\n    memory_mb: 16,\n    hda: Some(\"old dos/c.img\"),\n    cdrom: Some(\"/iso/fd.iso\"),\n    boot: Some(\"c\"),\n    localtime: true,\n)\n";
    let p = Profile::parse(v1, Path::new("old dos.ron")).unwrap();
    assert_eq!(
        p,
        Profile {
            name: "old dos".into(),
            os_type: OsType::Dos,
            memory_mib: 16,
            disks: vec![Disk { path: "old dos/c.img".into(), format: DiskFormat::Raw, ..Disk::default() }],
            cdrom: Some("/iso/fd.iso".into()),
            boot_order: "c".into(),
            localtime: true,
            ..Profile::default()
        }
    );
    // saving writes the current schema, which reads back identically
    let store = Store::open(scratch("migrate")).unwrap();
    std::fs::write(store.profile_path("old dos"), v1).unwrap();
    let loaded = store.load("old dos").unwrap();
    store.save(&loaded).unwrap();
    let text = std::fs::read_to_string(store.profile_path("old dos")).unwrap();
    assert!(text.contains("schema_version: 2") && text.contains("memory_mib: 16"), "{text}");
    assert_eq!(store.load("old dos").unwrap(), p);
    // errors in old files are located too
    let e = parse_err("(schema_version: 1, name: \"x\",\n memory_mb: 8, floppy: \"a\")");
    assert_eq!(where_(&e), (2, "floppy".into()), "{e}");
}

#[test]
fn missing_disk_is_a_problem_not_a_parse_error() {
    let store = Store::open(scratch("missing")).unwrap();
    let mut p = Profile { name: "vm".into(), ..Profile::default() };
    p.disks.push(Disk { path: "vm/disk0.qcow2".into(), ..Disk::default() });
    p.cdrom = Some("/nonexistent/x.iso".into());
    store.save(&p).unwrap();
    let p = store.load("vm").unwrap();
    let probs = store.problems(&p);
    assert_eq!(probs.len(), 2, "{probs:?}");
    assert_eq!(probs[0].field, "disks[0].path");
    assert!(probs[0].message.contains("vm/disk0.qcow2") && probs[0].message.contains("does not exist"));
    assert_eq!(probs[1].field, "cdrom");
    std::fs::create_dir_all(store.vm_dir("vm")).unwrap();
    std::fs::write(store.root().join("vm/disk0.qcow2"), b"").unwrap();
    assert_eq!(store.problems(&p).len(), 1);
}

#[test]
fn one_broken_profile_hides_nothing() {
    let store = Store::open(scratch("list")).unwrap();
    store.save(&Profile { name: "a".into(), ..Profile::default() }).unwrap();
    store.save(&Profile { name: "c".into(), ..Profile::default() }).unwrap();
    std::fs::write(store.root().join("b.ron"), "(schema_version: 2, name: \"b\", cpus: ").unwrap();
    std::fs::write(store.root().join("d.ron"), "(schema_version: 2, name: \"other\")").unwrap();
    std::fs::write(store.root().join("notes.txt"), "not a profile").unwrap();
    let l = store.list();
    let names: Vec<_> = l.profiles.iter().map(|(_, p)| p.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(l.errors.len(), 2);
    assert_eq!(l.errors[0].file(), Some(store.root().join("b.ron").as_path()));
    assert!(matches!(l.errors[0], ProfileError::Parse { line: 1, .. }), "{}", l.errors[0]);
    assert!(matches!(&l.errors[1], ProfileError::Invalid { field, .. } if field == "name"), "{}", l.errors[1]);
}

#[test]
fn templates_parse_and_instantiate() {
    let t = templates();
    assert_eq!(t.len(), 4);
    for os in OsType::ALL {
        assert_eq!(template(os).os_type, os);
    }
    let p = Profile::from_template(&template(OsType::Linux), "deb");
    assert_eq!(p.name, "deb");
    assert_eq!(p.disks[0].path, Path::new("deb/disk0.qcow2"));
    assert!(p.disks[0].size_mib.is_some());
    p.validate(Path::new("deb.ron")).unwrap();
    assert!(template(OsType::Dos).profile.localtime);
}

#[test]
fn default_store_follows_xdg_data_home() {
    let d = scratch("xdg");
    // only this test touches the environment
    std::env::set_var("XDG_DATA_HOME", &d);
    let s = Store::open_default().unwrap();
    std::env::remove_var("XDG_DATA_HOME");
    assert_eq!(s.root(), d.join("vessel"));
    assert!(s.root().is_dir());
}
