//! Desktop integration files and translations, checked with the tools distributions use:
//! `desktop-file-validate`, `appstreamcli validate`, `rsvg-convert` for the icons, and gettext's
//! `xgettext`/`msgfmt` for po/ (the template must match the sources, German must be complete).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(cmd)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/setup-debian installs it)"));
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

const APP_ID: &str = "org.vessel.Vessel";

#[test]
fn desktop_file_validates() {
    let f = format!("resources/{APP_ID}.desktop");
    let (ok, out) = run("desktop-file-validate", &[&f]);
    assert!(ok && out.trim().is_empty(), "desktop-file-validate {f}:\n{out}");
    let text = std::fs::read_to_string(root().join(&f)).unwrap();
    assert!(text.lines().any(|l| l == format!("Icon={APP_ID}")), "{text}");
    assert!(text.lines().any(|l| l == "Exec=vessel manager"), "{text}");
}

#[test]
fn metainfo_validates() {
    let f = format!("resources/{APP_ID}.metainfo.xml");
    let (ok, out) = run("appstreamcli", &["validate", "--no-net", &f]);
    assert!(ok, "appstreamcli validate {f}:\n{out}");
    assert!(!out.contains("E:") && !out.contains("W:"), "errors or warnings:\n{out}");
    let text = std::fs::read_to_string(root().join(&f)).unwrap();
    assert!(text.contains(&format!("<id>{APP_ID}</id>")));
    assert!(text.contains(&format!("<launchable type=\"desktop-id\">{APP_ID}.desktop</launchable>")));
}

#[test]
fn icons_render() {
    let tmp = std::env::temp_dir().join(format!("vessel-icons-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for (svg, size) in [
        (format!("resources/icons/hicolor/scalable/apps/{APP_ID}.svg"), "128"),
        (format!("resources/icons/hicolor/symbolic/apps/{APP_ID}-symbolic.svg"), "16"),
    ] {
        let png = tmp.join("icon.png");
        let (ok, out) = run("rsvg-convert", &["-w", size, "-h", size, &svg, "-o", png.to_str().unwrap()]);
        assert!(ok, "rsvg-convert {svg}: {out}");
        // the PNG has opaque pixels: read its IHDR size and check it is not empty
        let data = std::fs::read(&png).unwrap();
        assert!(data.starts_with(b"\x89PNG") && data.len() > 100, "{svg}: empty render");
        let w = u32::from_be_bytes(data[16..20].try_into().unwrap());
        assert_eq!(w.to_string(), size, "{svg}");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn pot_matches_sources() {
    let tmp = std::env::temp_dir().join(format!("vessel-pot-{}.pot", std::process::id()));
    let (ok, out) = run("po/update-pot", &[tmp.to_str().unwrap()]);
    assert!(ok, "po/update-pot: {out}");
    assert!(!out.contains("warning"), "xgettext warnings:\n{out}");
    let fresh = std::fs::read_to_string(&tmp).unwrap();
    std::fs::remove_file(&tmp).ok();
    let committed = std::fs::read_to_string(root().join("po/vessel.pot")).unwrap();
    assert!(fresh == committed, "po/vessel.pot is out of date: run po/update-pot");
    // every gettext("...") literal in the listed sources is in the template
    let ids = msgids(&committed);
    let files = std::fs::read_to_string(root().join("po/POTFILES")).unwrap();
    let mut n = 0;
    for f in files.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let src = std::fs::read_to_string(root().join(f)).unwrap();
        for part in src.split("gettext(\"").skip(1) {
            let lit = &part[..part.find("\")").unwrap()];
            assert!(ids.iter().any(|i| i == lit), "{f}: {lit:?} not in po/vessel.pot");
            n += 1;
        }
    }
    assert!(n > 50, "only {n} strings found");
}

/// The msgids of a .po/.pot file, continuation lines joined (escapes kept as written).
fn msgids(po: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for l in po.lines() {
        if let Some(rest) = l.strip_prefix("msgid ") {
            cur = Some(rest.trim_matches('"').to_string());
        } else if l.starts_with('"') {
            if let Some(c) = &mut cur {
                c.push_str(l.trim_matches('"'));
            }
        } else if let Some(c) = cur.take() {
            out.push(c);
        }
    }
    out
}

#[test]
fn translations_complete() {
    let linguas = std::fs::read_to_string(root().join("po/LINGUAS")).unwrap();
    for lang in linguas.split_whitespace() {
        let po = format!("po/{lang}.po");
        let (ok, out) = run("msgfmt", &["--check", "--statistics", "-o", "/dev/null", &po]);
        assert!(ok, "msgfmt {po}: {out}");
        assert!(!out.contains("untranslated") && !out.contains("fuzzy"), "{po}: {out}");
        // same messages as the template
        let (ok, out) = run("msgcmp", &[&po, "po/vessel.pot"]);
        assert!(ok, "msgcmp {po} po/vessel.pot: {out}");
    }
}
