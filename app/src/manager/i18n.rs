//! gettext setup. Strings are marked with `gettext("...")` (xgettext's default keyword; see
//! po/update-pot). Catalogues are looked up in `$VESSEL_LOCALEDIR`, else `<prefix>/share/locale`
//! next to the binary's `bin/`, else /usr/share/locale.

use std::path::PathBuf;

use gettextrs::{bind_textdomain_codeset, bindtextdomain, setlocale, textdomain, LocaleCategory};

pub const DOMAIN: &str = "vessel";

pub fn locale_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VESSEL_LOCALEDIR") {
        return d.into();
    }
    if let Some(prefix) = std::env::current_exe().ok().and_then(|e| Some(e.parent()?.parent()?.to_path_buf())) {
        let d = prefix.join("share/locale");
        if d.is_dir() {
            return d;
        }
    }
    PathBuf::from("/usr/share/locale")
}

pub fn init() {
    // SAFETY: called first thing in `vessel manager`, before any other thread exists.
    unsafe { setlocale(LocaleCategory::LcAll, "") };
    let dir = locale_dir();
    if let Err(e) = bindtextdomain(DOMAIN, &dir) {
        tracing::warn!(dir = %dir.display(), "bindtextdomain: {e}");
    }
    let _ = bind_textdomain_codeset(DOMAIN, "UTF-8");
    let _ = textdomain(DOMAIN);
}
