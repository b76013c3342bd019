//! The creation wizard: installation media (an ISO or nothing), OS type (preselects memory,
//! CPUs and disk from the template in resources/templates/), memory and CPUs, the hard disk
//! (size and format; created through the block layer, `core/src/block/ops.rs`), the name. It
//! saves the profile and, when asked, starts the VM.

use std::path::PathBuf;

use gettextrs::gettext;
use relm4::adw::prelude::*;
use relm4::prelude::*;
use relm4::{adw, gtk};
use vessel_core::block::ops;
use vessel_core::profile::{self, Disk, DiskFormat, DiskInterface, OsType, Profile, Store};

use super::library::os_label;
use super::widgets::{self, Form};

pub struct WizardInit {
    pub store_root: PathBuf,
}

#[derive(Debug)]
pub enum WizardOutput {
    Created { name: String, start: bool },
    Cancelled,
}

#[derive(Debug)]
pub enum WizardMsg {
    Next,
    Back,
    OsChanged,
    MediaChanged,
    Browse,
    IsoChosen(PathBuf),
    Create,
    Cancel,
}

pub const PAGES: [&str; 4] = ["media", "system", "disk", "name"];
pub const FORMATS: [DiskFormat; 2] = [DiskFormat::Qcow2, DiskFormat::Raw];

pub struct Wizard {
    store: Store,
    pub page: usize,
    /// The name the wizard suggested (replaced when the OS changes, unless the user edited it).
    suggested: String,
    chooser: Option<gtk::FileChooserNative>,
}

#[derive(Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct WizardWidgets {
    pub stack: gtk::Stack,
    pub media_empty: gtk::CheckButton,
    pub media_iso: gtk::CheckButton,
    pub iso: gtk::Entry,
    pub browse: gtk::Button,
    pub os: gtk::DropDown,
    pub memory: gtk::SpinButton,
    pub cpus: gtk::SpinButton,
    pub disk: gtk::CheckButton,
    pub disk_gib: gtk::SpinButton,
    pub format: gtk::DropDown,
    pub name: gtk::Entry,
    pub start_after: gtk::CheckButton,
    pub summary: gtk::Label,
    pub error: gtk::Label,
    pub back: gtk::Button,
    pub next: gtk::Button,
    pub create: gtk::Button,
}

fn page_box(title: &str, form: &Form) -> gtk::Box {
    let b = gtk::Box::new(gtk::Orientation::Vertical, 12);
    b.set_margin_top(18);
    b.set_margin_bottom(18);
    b.set_margin_start(18);
    b.set_margin_end(18);
    let t = gtk::Label::new(Some(title));
    t.add_css_class("title-3");
    t.set_xalign(0.0);
    b.append(&t);
    b.append(&form.grid);
    b
}

impl Wizard {
    fn unique_name(&self, base: &str) -> String {
        let mut n = base.to_string();
        let mut i = 2;
        while self.store.profile_path(&n).exists() {
            n = format!("{base} {i}");
            i += 1;
        }
        n
    }

    fn preselect(&mut self, w: &WizardWidgets) {
        let os = OsType::ALL[w.os.selected() as usize % OsType::ALL.len()];
        let t = profile::template(os);
        w.memory.set_value(t.profile.memory_mib as f64);
        w.cpus.set_value(t.profile.cpus as f64);
        match t.profile.disks.first() {
            Some(d) => {
                w.disk.set_active(true);
                w.disk_gib.set_value(d.size_mib.unwrap_or(2048) as f64 / 1024.0);
                w.format.set_selected(FORMATS.iter().position(|f| *f == d.format).unwrap_or(0) as u32);
            }
            None => w.disk.set_active(false),
        }
        let current = w.name.text();
        if current.is_empty() || current == self.suggested {
            self.suggested = self.unique_name(&t.profile.name);
            w.name.set_text(&self.suggested);
        }
    }

    /// The ISO the user chose, if "ISO image" is selected; an error message if it is unusable.
    fn iso(w: &WizardWidgets) -> Result<Option<PathBuf>, String> {
        if !w.media_iso.is_active() {
            return Ok(None);
        }
        let t = w.iso.text();
        let p = PathBuf::from(t.trim());
        if t.trim().is_empty() {
            return Err(gettext("Choose an ISO image, or select “No installation media”."));
        }
        if !p.is_file() {
            return Err(gettext("{file} does not exist").replace("{file}", &p.display().to_string()));
        }
        Ok(Some(p.canonicalize().unwrap_or(p)))
    }

    fn check_page(&self, w: &WizardWidgets, page: usize) -> Result<(), String> {
        match PAGES[page] {
            "media" => Self::iso(w).map(drop),
            "name" => {
                let name = w.name.text().to_string();
                if !profile::valid_name(&name) {
                    Err(gettext("“{name}” cannot be used as a name (1 to 64 characters, no “/”, not starting with “.”, no spaces at either end).").replace("{name}", &name))
                } else if self.store.profile_path(&name).exists() {
                    Err(gettext("A virtual machine named “{name}” already exists.").replace("{name}", &name))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    fn summary(w: &WizardWidgets) -> String {
        let os = OsType::ALL[w.os.selected() as usize % OsType::ALL.len()];
        let media = match Self::iso(w) {
            Ok(Some(p)) => p.display().to_string(),
            _ => gettext("none"),
        };
        let disk = if w.disk.is_active() {
            format!("{:.1} GiB {}", w.disk_gib.value(), FORMATS[w.format.selected() as usize % 2].name())
        } else {
            gettext("none")
        };
        gettext("Operating system: {os}\nMemory: {mem} MiB, CPUs: {cpus}\nHard disk: {disk}\nInstallation media: {media}")
            .replace("{os}", &os_label(os))
            .replace("{mem}", &(w.memory.value() as u32).to_string())
            .replace("{cpus}", &(w.cpus.value() as u32).to_string())
            .replace("{disk}", &disk)
            .replace("{media}", &media)
    }

    /// Create the disk image and save the profile.
    fn create(&self, w: &WizardWidgets) -> Result<String, String> {
        for p in 0..PAGES.len() {
            self.check_page(w, p)?;
        }
        let name = w.name.text().to_string();
        let os = OsType::ALL[w.os.selected() as usize % OsType::ALL.len()];
        let t = profile::template(os);
        let mut p = Profile::from_template(&t, &name);
        p.memory_mib = w.memory.value() as u32;
        p.cpus = w.cpus.value() as u16;
        p.disks.clear();
        let mut created = None;
        if w.disk.is_active() {
            let format = FORMATS[w.format.selected() as usize % 2];
            let ext = if format == DiskFormat::Qcow2 { "qcow2" } else { "img" };
            let rel = PathBuf::from(&name).join(format!("disk0.{ext}"));
            let size_mib = (w.disk_gib.value() * 1024.0).round() as u64;
            let file = self.store.resolve(&rel);
            if file.exists() {
                return Err(gettext("{file} already exists").replace("{file}", &file.display().to_string()));
            }
            if let Some(d) = file.parent() {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            }
            let spec = ops::CreateSpec { format: format.name().into(), size: Some(size_mib << 20), ..Default::default() };
            ops::create(&file, &spec).map_err(|e| e.to_string())?;
            created = Some(file);
            p.disks.push(Disk { path: rel, format, interface: DiskInterface::Ide, read_only: false, size_mib: Some(size_mib) });
        }
        if let Some(iso) = Self::iso(w)? {
            p.cdrom = Some(iso);
            if !p.boot_order.starts_with('d') {
                p.boot_order = format!("d{}", p.boot_order.replace('d', ""));
            }
        }
        if let Err(e) = self.store.create(&p) {
            if let Some(f) = created {
                let _ = std::fs::remove_file(f);
            }
            return Err(e.to_string());
        }
        tracing::info!(vm = name, "created");
        Ok(name)
    }

    fn show_page(&self, w: &WizardWidgets) {
        w.stack.set_visible_child_name(PAGES[self.page]);
        w.back.set_sensitive(self.page > 0);
        let last = self.page + 1 == PAGES.len();
        w.next.set_visible(!last);
        w.create.set_visible(last);
        w.start_after.set_visible(last);
        if last {
            w.summary.set_text(&Self::summary(w));
        }
    }
}

impl Component for Wizard {
    type CommandOutput = ();
    type Input = WizardMsg;
    type Output = WizardOutput;
    type Init = WizardInit;
    type Root = adw::Window;
    type Widgets = WizardWidgets;

    fn init_root() -> Self::Root {
        adw::Window::builder().title(gettext("New Virtual Machine")).modal(true).default_width(560).default_height(480).build()
    }

    fn init(init: WizardInit, root: Self::Root, sender: ComponentSender<Self>) -> ComponentParts<Self> {
        let store = Store::open(init.store_root).expect("the manager's store directory exists");
        let mut model = Wizard { store, page: 0, suggested: String::new(), chooser: None };

        let stack = gtk::Stack::new();
        stack.set_transition_type(gtk::StackTransitionType::SlideLeftRight);
        stack.set_vexpand(true);

        // 1. media
        let mut f = Form::new();
        let media_empty = gtk::CheckButton::with_mnemonic(&gettext("_No installation media (empty machine)"));
        let media_iso = gtk::CheckButton::with_mnemonic(&gettext("Boot from an _ISO image"));
        media_iso.set_group(Some(&media_empty));
        media_empty.set_active(true);
        f.full(&media_empty);
        f.full(&media_iso);
        let iso = gtk::Entry::new();
        iso.set_placeholder_text(Some(&gettext("/path/to/installer.iso")));
        let browse = gtk::Button::with_mnemonic(&gettext("_Browse…"));
        let iso_row = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        iso.set_hexpand(true);
        iso_row.append(&iso);
        iso_row.append(&browse);
        f.row(&gettext("ISO image"), &iso_row);
        stack.add_named(&page_box(&gettext("Installation media"), &f), Some("media"));

        // 2. system
        let mut f = Form::new();
        let labels: Vec<String> = OsType::ALL.iter().map(|o| os_label(*o)).collect();
        let os = widgets::dropdown(&labels);
        f.row(&gettext("Operating system"), &os);
        let memory = widgets::spin(2.0, 3584.0, 16.0);
        f.row(&gettext("Memory (MiB)"), &memory);
        let cpus = widgets::spin(1.0, 16.0, 1.0);
        f.row(&gettext("CPUs"), &cpus);
        let hint = widgets::label(&gettext("Memory and disk are preset for the operating system you choose."));
        hint.add_css_class("dim-label");
        hint.set_wrap(true);
        f.full(&hint);
        stack.add_named(&page_box(&gettext("System"), &f), Some("system"));

        // 3. disk
        let mut f = Form::new();
        let disk = gtk::CheckButton::with_mnemonic(&gettext("Create a _hard disk"));
        f.full(&disk);
        let disk_gib = gtk::SpinButton::with_range(0.1, 2048.0, 0.5);
        disk_gib.set_digits(1);
        f.row(&gettext("Size (GiB)"), &disk_gib);
        let format = widgets::dropdown(&[gettext("qcow2 (grows as needed, snapshots)"), gettext("raw (plain file)")]);
        f.row(&gettext("Format"), &format);
        stack.add_named(&page_box(&gettext("Hard disk"), &f), Some("disk"));

        // 4. name
        let mut f = Form::new();
        let name = gtk::Entry::new();
        name.set_activates_default(true);
        f.row(&gettext("Name"), &name);
        let summary = widgets::label("");
        summary.set_selectable(true);
        summary.set_wrap(true);
        summary.set_wrap_mode(gtk::pango::WrapMode::WordChar);
        summary.set_max_width_chars(50);
        f.full(&summary);
        stack.add_named(&page_box(&gettext("Name and summary"), &f), Some("name"));

        let error = gtk::Label::new(None);
        error.add_css_class("error");
        error.set_wrap(true);
        error.set_visible(false);
        error.set_margin_start(18);
        error.set_margin_end(18);

        let back = gtk::Button::with_mnemonic(&gettext("_Back"));
        let next = gtk::Button::with_mnemonic(&gettext("_Next"));
        next.add_css_class("suggested-action");
        let create = gtk::Button::with_mnemonic(&gettext("C_reate"));
        create.add_css_class("suggested-action");
        let start_after = gtk::CheckButton::with_mnemonic(&gettext("_Start it now"));
        start_after.set_active(true);
        let buttons = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        buttons.set_margin_top(6);
        buttons.set_margin_bottom(12);
        buttons.set_margin_start(18);
        buttons.set_margin_end(18);
        buttons.append(&back);
        let spacer = gtk::Box::new(gtk::Orientation::Horizontal, 0);
        spacer.set_hexpand(true);
        buttons.append(&spacer);
        buttons.append(&start_after);
        buttons.append(&next);
        buttons.append(&create);

        let header = adw::HeaderBar::new();
        let cancel = gtk::Button::with_mnemonic(&gettext("_Cancel"));
        header.pack_start(&cancel);
        header.set_show_end_title_buttons(false);
        let content = gtk::Box::new(gtk::Orientation::Vertical, 0);
        content.append(&header);
        content.append(&stack);
        content.append(&error);
        content.append(&buttons);
        root.set_content(Some(&content));

        let connect = |b: &gtk::Button, m: fn() -> WizardMsg| {
            let s = sender.clone();
            b.connect_clicked(move |_| s.input(m()));
        };
        connect(&back, || WizardMsg::Back);
        connect(&next, || WizardMsg::Next);
        connect(&create, || WizardMsg::Create);
        connect(&cancel, || WizardMsg::Cancel);
        connect(&browse, || WizardMsg::Browse);
        {
            let s = sender.clone();
            os.connect_selected_notify(move |_| s.input(WizardMsg::OsChanged));
            let s = sender.clone();
            media_iso.connect_toggled(move |_| s.input(WizardMsg::MediaChanged));
            let s = sender.clone();
            root.connect_close_request(move |_| {
                s.input(WizardMsg::Cancel);
                gtk::glib::Propagation::Stop
            });
        }

        let widgets = WizardWidgets {
            stack, media_empty, media_iso, iso, browse, os, memory, cpus, disk, disk_gib, format, name,
            start_after, summary, error, back, next, create,
        };
        model.preselect(&widgets);
        model.show_page(&widgets);
        widgets.iso.set_sensitive(false);
        widgets.browse.set_sensitive(false);
        ComponentParts { model, widgets }
    }

    fn update_with_view(&mut self, w: &mut WizardWidgets, msg: WizardMsg, sender: ComponentSender<Self>, root: &Self::Root) {
        let mut error = None;
        match msg {
            WizardMsg::Next => match self.check_page(w, self.page) {
                Ok(()) => self.page = (self.page + 1).min(PAGES.len() - 1),
                Err(e) => error = Some(e),
            },
            WizardMsg::Back => self.page = self.page.saturating_sub(1),
            WizardMsg::OsChanged => self.preselect(w),
            WizardMsg::MediaChanged => {
                let on = w.media_iso.is_active();
                w.iso.set_sensitive(on);
                w.browse.set_sensitive(on);
            }
            WizardMsg::Browse => {
                let c = gtk::FileChooserNative::new(
                    Some(&gettext("Choose an ISO image")),
                    Some(root),
                    gtk::FileChooserAction::Open,
                    Some(&gettext("_Open")),
                    Some(&gettext("_Cancel")),
                );
                let filter = gtk::FileFilter::new();
                filter.set_name(Some(&gettext("CD/DVD images (*.iso)")));
                filter.add_pattern("*.iso");
                filter.add_pattern("*.ISO");
                c.add_filter(&filter);
                let s = sender.clone();
                c.connect_response(move |c, r| {
                    if r == gtk::ResponseType::Accept {
                        if let Some(p) = c.file().and_then(|f| f.path()) {
                            s.input(WizardMsg::IsoChosen(p));
                        }
                    }
                });
                c.show();
                self.chooser = Some(c);
            }
            WizardMsg::IsoChosen(p) => {
                w.media_iso.set_active(true);
                w.iso.set_text(&p.display().to_string());
            }
            WizardMsg::Create => match self.create(w) {
                Ok(name) => {
                    let _ = sender.output(WizardOutput::Created { name, start: w.start_after.is_active() });
                    return;
                }
                Err(e) => error = Some(e),
            },
            WizardMsg::Cancel => {
                let _ = sender.output(WizardOutput::Cancelled);
                return;
            }
        }
        w.error.set_visible(error.is_some());
        w.error.set_text(error.as_deref().unwrap_or(""));
        self.show_page(w);
    }
}
