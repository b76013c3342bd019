//! `vessel manager`: the GTK 4 / libadwaita desktop manager (relm4).
//!
//! - `library.rs`: the main window, a list of every VM in the profile store (state, the last
//!   screen as a thumbnail, start/pause/stop, settings, delete with confirmation); profiles that
//!   fail to load are listed as problems, never hiding the others.
//! - `wizard.rs`: the creation wizard (media, OS type with the template's defaults, memory and
//!   CPUs, disk created through the block layer, name).
//! - `settings.rs`: the profile editor (every field of `Profile`).
//! - `vmproc.rs`: each VM runs in its own `vessel run --profile NAME -monitor unix:SOCK,...`
//!   process, so a guest crash never takes the manager down; `control.rs` speaks the monitor
//!   protocol on that socket (docs/monitor.md).
//! - `i18n.rs`: gettext (po/).
//!
//! The manager starts with `vessel manager`; `vessel` with no subcommand starts it too when a
//! display is available (`DISPLAY`/`WAYLAND_DISPLAY` set) and prints the help otherwise.

pub mod control;
mod i18n;
mod library;
mod settings;
pub mod thumbnail;
mod vmproc;
mod wizard;
mod widgets;

#[cfg(test)]
mod tests;

use clap::Args;
use relm4::RelmApp;

pub const APP_ID: &str = "org.vessel.Vessel";

#[derive(Args, Debug, Clone, Default)]
pub struct ManagerArgs {}

/// True when a GUI can be shown (used to pick the default subcommand).
pub fn display_available() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

pub fn run(_args: ManagerArgs) -> anyhow::Result<()> {
    i18n::init();
    let store = vessel_core::profile::Store::open_default()?;
    let app = RelmApp::new(APP_ID).with_args(Vec::new());
    relm4::set_global_css(library::CSS);
    app.run::<library::Library>(library::Init { store, vessel_exe: vmproc::vessel_exe() });
    Ok(())
}
