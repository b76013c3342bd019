//! Profile templates for common guest types, shipped in `resources/templates/*.ron` (compiled
//! in, so the binary works without installed resources). The creation wizard preselects
//! memory, disk size and devices from them. Disk paths may contain `{name}`.

use std::path::Path;

use super::{OsType, Profile};

#[derive(Clone, Debug)]
pub struct Template {
    /// File stem (`linux-i386`).
    pub id: &'static str,
    pub os_type: OsType,
    pub profile: Profile,
}

const SOURCES: [(&str, &str); 4] = [
    ("linux-i386", include_str!("../../../resources/templates/linux-i386.ron")),
    ("dos", include_str!("../../../resources/templates/dos.ron")),
    ("windows-9x", include_str!("../../../resources/templates/windows-9x.ron")),
    ("other", include_str!("../../../resources/templates/other.ron")),
];

/// All templates, in wizard order.
pub fn templates() -> Vec<Template> {
    SOURCES
        .iter()
        .map(|(id, text)| {
            let file = Path::new("resources/templates").join(format!("{id}.ron"));
            let profile = Profile::parse(text, &file).unwrap_or_else(|e| panic!("shipped template broken: {e}"));
            Template { id, os_type: profile.os_type, profile }
        })
        .collect()
}

/// The template for an OS type.
pub fn template(os: OsType) -> Template {
    templates().into_iter().find(|t| t.os_type == os).expect("a template for every OS type")
}
