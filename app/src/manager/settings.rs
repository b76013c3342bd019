//! The settings editor: every field of a VM profile (name, OS type, CPUs, memory, disks, CD-ROM,
//! floppy, boot order, sound, network, VGA, full screen, RTC in local time). Saving validates
//! through the store (the same checks as loading a RON file); a rename moves the VM's own
//! directory and the disk paths inside it.

use std::path::PathBuf;

use gettextrs::gettext;
use relm4::adw::prelude::*;
use relm4::prelude::*;
use relm4::{adw, gtk};
use vessel_core::profile::{Disk, DiskFormat, DiskInterface, Network, OsType, Profile, SoundCard, Store, Vga};

use super::library::os_label;
use super::widgets::{self, Form};

pub const VGAS: [Vga; 2] = [Vga::Cirrus, Vga::Std];
pub const SOUNDS: [SoundCard; 2] = [SoundCard::None, SoundCard::Sb16];
pub const NETWORKS: [Network; 2] = [Network::None, Network::User];
pub const FORMATS: [DiskFormat; 2] = [DiskFormat::Qcow2, DiskFormat::Raw];
pub const INTERFACES: [DiskInterface; 2] = [DiskInterface::Ide, DiskInterface::Floppy];

pub struct SettingsInit {
    pub store_root: PathBuf,
    pub profile: Profile,
}

#[derive(Debug)]
pub enum SettingsOutput {
    Saved { old: String, new: String },
    Cancelled,
}

#[derive(Debug)]
pub enum SettingsMsg {
    Save,
    Cancel,
    AddDisk,
    RemoveDisk(u32),
}

pub struct Settings {
    store: Store,
    original: Profile,
    next_disk_id: u32,
}

#[derive(Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct DiskRow {
    id: u32,
    pub container: gtk::Box,
    pub path: gtk::Entry,
    pub format: gtk::DropDown,
    pub interface: gtk::DropDown,
    pub read_only: gtk::CheckButton,
    pub remove: gtk::Button,
    size_mib: Option<u64>,
}

#[derive(Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct SettingsWidgets {
    pub name: gtk::Entry,
    pub os: gtk::DropDown,
    pub cpus: gtk::SpinButton,
    pub memory: gtk::SpinButton,
    pub boot_order: gtk::Entry,
    pub vga: gtk::DropDown,
    pub sound: gtk::DropDown,
    pub network: gtk::DropDown,
    pub cdrom: gtk::Entry,
    pub floppy: gtk::Entry,
    pub full_screen: gtk::CheckButton,
    pub localtime: gtk::CheckButton,
    pub disks_box: gtk::Box,
    pub disks: Vec<DiskRow>,
    pub add_disk: gtk::Button,
    pub save: gtk::Button,
    pub cancel: gtk::Button,
    pub error: gtk::Label,
}

fn index_of<T: PartialEq>(all: &[T], v: &T) -> u32 {
    all.iter().position(|x| x == v).unwrap_or(0) as u32
}

fn opt_path(e: &gtk::Entry) -> Option<PathBuf> {
    let t = e.text();
    let t = t.trim();
    (!t.is_empty()).then(|| PathBuf::from(t))
}

impl Settings {
    fn disk_row(&mut self, d: &Disk, sender: &ComponentSender<Self>) -> DiskRow {
        let id = self.next_disk_id;
        self.next_disk_id += 1;
        let container = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        let path = gtk::Entry::new();
        path.set_text(&d.path.display().to_string());
        path.set_hexpand(true);
        path.set_width_chars(24);
        path.set_placeholder_text(Some(&gettext("disk image file")));
        let format = widgets::dropdown(&["qcow2".to_string(), "raw".to_string()]);
        format.set_selected(index_of(&FORMATS, &d.format));
        let interface = widgets::dropdown(&[gettext("IDE"), gettext("Floppy")]);
        interface.set_selected(index_of(&INTERFACES, &d.interface));
        let read_only = gtk::CheckButton::with_label(&gettext("Read-only"));
        read_only.set_active(d.read_only);
        let remove = gtk::Button::from_icon_name("list-remove-symbolic");
        remove.set_tooltip_text(Some(&gettext("Remove this disk (the image file is kept)")));
        let s = sender.clone();
        remove.connect_clicked(move |_| s.input(SettingsMsg::RemoveDisk(id)));
        for w in [path.upcast_ref::<gtk::Widget>(), format.upcast_ref(), interface.upcast_ref(), read_only.upcast_ref(), remove.upcast_ref()] {
            container.append(w);
        }
        DiskRow { id, container, path, format, interface, read_only, remove, size_mib: d.size_mib }
    }

    fn profile_from(&self, w: &SettingsWidgets) -> Profile {
        let mut p = self.original.clone();
        p.name = w.name.text().to_string();
        p.os_type = OsType::ALL[w.os.selected() as usize % OsType::ALL.len()];
        p.cpus = w.cpus.value() as u16;
        p.memory_mib = w.memory.value() as u32;
        p.boot_order = w.boot_order.text().trim().to_string();
        p.vga = VGAS[w.vga.selected() as usize % VGAS.len()];
        p.sound = SOUNDS[w.sound.selected() as usize % SOUNDS.len()];
        p.network = NETWORKS[w.network.selected() as usize % NETWORKS.len()];
        p.cdrom = opt_path(&w.cdrom);
        p.floppy = opt_path(&w.floppy);
        p.full_screen = w.full_screen.is_active();
        p.localtime = w.localtime.is_active();
        p.disks = w
            .disks
            .iter()
            .map(|d| Disk {
                path: PathBuf::from(d.path.text().trim()),
                format: FORMATS[d.format.selected() as usize % FORMATS.len()],
                interface: INTERFACES[d.interface.selected() as usize % INTERFACES.len()],
                read_only: d.read_only.is_active(),
                size_mib: d.size_mib,
            })
            .collect();
        p
    }

    fn save(&self, w: &SettingsWidgets) -> Result<(String, String), String> {
        let mut p = self.profile_from(w);
        let old = self.original.name.clone();
        let renamed = p.name != old;
        if renamed {
            if self.store.profile_path(&p.name).exists() {
                return Err(gettext("A virtual machine named “{name}” already exists.").replace("{name}", &p.name));
            }
            p.validate(&self.store.profile_path(&p.name)).map_err(|e| e.to_string())?;
            // the VM's own directory follows the name, and so do the paths inside it
            let (from, to) = (self.store.vm_dir(&old), self.store.vm_dir(&p.name));
            if from.is_dir() && !to.exists() {
                std::fs::rename(&from, &to).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
                for d in &mut p.disks {
                    if let Ok(rest) = d.path.strip_prefix(&old) {
                        d.path = PathBuf::from(&p.name).join(rest);
                    }
                }
            }
        }
        self.store.save(&p).map_err(|e| e.to_string())?;
        if renamed {
            self.store.delete(&old, false).map_err(|e| e.to_string())?;
        }
        Ok((old, p.name))
    }
}

impl Component for Settings {
    type CommandOutput = ();
    type Input = SettingsMsg;
    type Output = SettingsOutput;
    type Init = SettingsInit;
    type Root = adw::Window;
    type Widgets = SettingsWidgets;

    fn init_root() -> Self::Root {
        adw::Window::builder().modal(true).default_width(680).default_height(720).build()
    }

    fn init(init: SettingsInit, root: Self::Root, sender: ComponentSender<Self>) -> ComponentParts<Self> {
        let p = init.profile;
        root.set_title(Some(&gettext("{name} — Settings").replace("{name}", &p.name)));
        let store = Store::open(init.store_root).expect("the manager's store directory exists");
        let mut model = Settings { store, original: p.clone(), next_disk_id: 0 };

        let mut f = Form::new();
        let name = gtk::Entry::new();
        name.set_text(&p.name);
        f.row(&gettext("Name"), &name);
        let labels: Vec<String> = OsType::ALL.iter().map(|o| os_label(*o)).collect();
        let os = widgets::dropdown(&labels);
        os.set_selected(index_of(&OsType::ALL, &p.os_type));
        f.row(&gettext("Operating system"), &os);
        let cpus = widgets::spin(1.0, 16.0, 1.0);
        cpus.set_value(p.cpus as f64);
        f.row(&gettext("CPUs"), &cpus);
        let memory = widgets::spin(2.0, 3584.0, 16.0);
        memory.set_value(p.memory_mib as f64);
        f.row(&gettext("Memory (MiB)"), &memory);

        let disks_box = gtk::Box::new(gtk::Orientation::Vertical, 6);
        let mut disks = Vec::new();
        for d in &p.disks {
            let r = model.disk_row(d, &sender);
            disks_box.append(&r.container);
            disks.push(r);
        }
        let add_disk = gtk::Button::with_mnemonic(&gettext("_Add disk"));
        add_disk.set_halign(gtk::Align::Start);
        let dbox = gtk::Box::new(gtk::Orientation::Vertical, 6);
        dbox.append(&disks_box);
        dbox.append(&add_disk);
        f.row(&gettext("Hard disks"), &dbox);

        let cdrom = gtk::Entry::new();
        cdrom.set_text(&p.cdrom.as_ref().map(|c| c.display().to_string()).unwrap_or_default());
        cdrom.set_placeholder_text(Some(&gettext("empty drive")));
        f.row(&gettext("CD-ROM image"), &cdrom);
        let floppy = gtk::Entry::new();
        floppy.set_text(&p.floppy.as_ref().map(|c| c.display().to_string()).unwrap_or_default());
        floppy.set_placeholder_text(Some(&gettext("empty drive")));
        f.row(&gettext("Floppy image"), &floppy);
        let boot_order = gtk::Entry::new();
        boot_order.set_text(&p.boot_order);
        boot_order.set_tooltip_text(Some(&gettext("Letters in boot order: a floppy, c hard disk, d CD-ROM, n network")));
        f.row(&gettext("Boot order"), &boot_order);
        let vga = widgets::dropdown(&[gettext("Cirrus Logic GD5446"), gettext("Standard VGA")]);
        vga.set_selected(index_of(&VGAS, &p.vga));
        f.row(&gettext("Graphics"), &vga);
        let sound = widgets::dropdown(&[gettext("None"), gettext("Sound Blaster 16 (not emulated yet)")]);
        sound.set_selected(index_of(&SOUNDS, &p.sound));
        f.row(&gettext("Sound"), &sound);
        let network = widgets::dropdown(&[gettext("None"), gettext("User-mode NAT (not emulated yet)")]);
        network.set_selected(index_of(&NETWORKS, &p.network));
        f.row(&gettext("Network"), &network);
        let full_screen = gtk::CheckButton::with_mnemonic(&gettext("Start in _full screen"));
        full_screen.set_active(p.full_screen);
        f.full(&full_screen);
        let localtime = gtk::CheckButton::with_mnemonic(&gettext("Real-time clock in _local time (DOS, Windows)"));
        localtime.set_active(p.localtime);
        f.full(&localtime);

        let error = gtk::Label::new(None);
        error.add_css_class("error");
        error.set_wrap(true);
        error.set_selectable(true);
        error.set_visible(false);
        f.full(&error);

        let header = adw::HeaderBar::new();
        header.set_show_end_title_buttons(false);
        let cancel = gtk::Button::with_mnemonic(&gettext("_Cancel"));
        let save = gtk::Button::with_mnemonic(&gettext("_Save"));
        save.add_css_class("suggested-action");
        header.pack_start(&cancel);
        header.pack_end(&save);
        f.grid.set_margin_top(18);
        f.grid.set_margin_bottom(18);
        f.grid.set_margin_start(18);
        f.grid.set_margin_end(18);
        let scroller = gtk::ScrolledWindow::new();
        scroller.set_vexpand(true);
        scroller.set_child(Some(&f.grid));
        let content = gtk::Box::new(gtk::Orientation::Vertical, 0);
        content.append(&header);
        content.append(&scroller);
        root.set_content(Some(&content));

        let connect = |b: &gtk::Button, m: fn() -> SettingsMsg| {
            let s = sender.clone();
            b.connect_clicked(move |_| s.input(m()));
        };
        connect(&save, || SettingsMsg::Save);
        connect(&cancel, || SettingsMsg::Cancel);
        connect(&add_disk, || SettingsMsg::AddDisk);
        {
            let s = sender.clone();
            root.connect_close_request(move |_| {
                s.input(SettingsMsg::Cancel);
                gtk::glib::Propagation::Stop
            });
        }

        let widgets = SettingsWidgets {
            name, os, cpus, memory, boot_order, vga, sound, network, cdrom, floppy, full_screen, localtime,
            disks_box, disks, add_disk, save, cancel, error,
        };
        ComponentParts { model, widgets }
    }

    fn update_with_view(&mut self, w: &mut SettingsWidgets, msg: SettingsMsg, sender: ComponentSender<Self>, _root: &Self::Root) {
        match msg {
            SettingsMsg::Save => match self.save(w) {
                Ok((old, new)) => {
                    let _ = sender.output(SettingsOutput::Saved { old, new });
                }
                Err(e) => {
                    w.error.set_text(&e);
                    w.error.set_visible(true);
                }
            },
            SettingsMsg::Cancel => {
                let _ = sender.output(SettingsOutput::Cancelled);
            }
            SettingsMsg::AddDisk => {
                let r = self.disk_row(&Disk::default(), &sender);
                w.disks_box.append(&r.container);
                r.path.grab_focus();
                w.disks.push(r);
            }
            SettingsMsg::RemoveDisk(id) => {
                if let Some(i) = w.disks.iter().position(|d| d.id == id) {
                    let r = w.disks.remove(i);
                    w.disks_box.remove(&r.container);
                }
            }
        }
    }
}
