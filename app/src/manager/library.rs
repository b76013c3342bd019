//! The main window: every VM in the store with its state, the last screen as a thumbnail and
//! its actions; profiles that fail to load are listed as problems above the VMs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use gettextrs::gettext;
use relm4::adw::prelude::*;
use relm4::prelude::*;
use relm4::{adw, gtk};
use vessel_core::profile::{OsType, Problem, Profile, Store};

use super::settings::{Settings, SettingsInit, SettingsOutput};
use super::vmproc::{self, VmProcess, VmState};
use super::wizard::{Wizard, WizardInit, WizardOutput};

pub const CSS: &str = concat!(
    ".vm-thumbnail { background-color: #1e1e1e; border-radius: 6px; }\n",
    ".vm-problem { color: @warning_color; }\n",
);

pub struct Init {
    pub store: Store,
    pub vessel_exe: PathBuf,
}

pub struct VmEntry {
    pub profile: Profile,
    pub problems: Vec<Problem>,
}

pub struct Library {
    pub store: Store,
    exe: PathBuf,
    pub vms: Vec<VmEntry>,
    /// One message per profile file that could not be loaded.
    pub broken: Vec<String>,
    procs: HashMap<String, VmProcess>,
    pub states: HashMap<String, VmState>,
    pub notice: Option<String>,
    generation: u64,
    pub wizard: Option<Controller<Wizard>>,
    pub settings: Option<Controller<Settings>>,
    /// The open delete confirmation (tests answer it with `response()`).
    pub delete_dialog: Option<(adw::MessageDialog, gtk::CheckButton)>,
}

#[derive(Debug)]
pub enum Msg {
    Poll,
    NewVm,
    WizardDone(WizardOutput),
    Start(String),
    Pause(String),
    Resume(String),
    Stop(String),
    Edit(String),
    SettingsDone(SettingsOutput),
    Delete(String),
    DeleteConfirmed { name: String, files: bool },
    DeleteDialogClosed,
}

#[derive(Debug)]
pub enum Cmd {
    Stopped { name: String, error: Option<String> },
}

/// Widgets of one VM row.
#[derive(Clone)]
pub struct Row {
    pub name: String,
    pub thumbnail: gtk::Picture,
    pub state: gtk::Label,
    pub start: gtk::Button,
    pub pause: gtk::Button,
    pub stop: gtk::Button,
    pub settings: gtk::Button,
    pub delete: gtk::Button,
    thumb_mtime: std::rc::Rc<std::cell::Cell<Option<SystemTime>>>,
}

/// Widgets the tests press are fields too.
#[derive(Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct Widgets {
    pub new_button: gtk::Button,
    pub list: gtk::ListBox,
    pub problems: gtk::Box,
    pub notice: gtk::Label,
    pub empty: gtk::Label,
    pub rows: Vec<Row>,
    shown_generation: u64,
}

pub fn os_label(os: OsType) -> String {
    match os {
        OsType::Linux => gettext("Linux (i386)"),
        OsType::Dos => gettext("DOS"),
        OsType::Windows9x => gettext("Windows 9x"),
        OsType::Other => gettext("Other"),
    }
}

pub fn state_label(s: &VmState) -> String {
    match s {
        VmState::Stopped => gettext("Stopped"),
        VmState::Starting => gettext("Starting…"),
        VmState::Running => gettext("Running"),
        VmState::Paused => gettext("Paused"),
        VmState::Stopping => gettext("Stopping…"),
        VmState::Failed { code: Some(code), message } => {
            gettext("Failed (exit status {code}): {message}").replace("{code}", &code.to_string()).replace("{message}", message)
        }
        VmState::Failed { code: None, message } => gettext("Failed: {message}").replace("{message}", message),
    }
}

fn summary(p: &Profile) -> String {
    let mut parts = vec![os_label(p.os_type), gettext("{n} MiB").replace("{n}", &p.memory_mib.to_string())];
    parts.push(if p.cpus == 1 { gettext("1 CPU") } else { gettext("{n} CPUs").replace("{n}", &p.cpus.to_string()) });
    for d in &p.disks {
        let name = d.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        parts.push(match d.size_mib {
            Some(m) => format!("{name} ({:.1} GiB)", m as f64 / 1024.0),
            None => name,
        });
    }
    if let Some(c) = &p.cdrom {
        parts.push(gettext("CD: {file}").replace("{file}", &c.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()));
    }
    parts.join(" · ")
}

impl Library {
    fn reload(&mut self) {
        let listing = self.store.list();
        self.vms = listing
            .profiles
            .into_iter()
            .map(|(_, p)| VmEntry { problems: self.store.problems(&p), profile: p })
            .collect();
        self.broken = listing.errors.iter().map(|e| e.to_string()).collect();
        self.states.retain(|n, _| self.vms.iter().any(|v| &v.profile.name == n));
        self.generation += 1;
    }

    /// The process id of a running VM's `vessel run`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.get(name).map(|p| p.pid())
    }

    pub fn state(&self, name: &str) -> VmState {
        self.states.get(name).cloned().unwrap_or(VmState::Stopped)
    }

    fn set_notice(&mut self, text: impl Into<String>) {
        let t = text.into();
        tracing::warn!("{t}");
        self.notice = Some(t);
    }
}

impl Component for Library {
    type CommandOutput = Cmd;
    type Input = Msg;
    type Output = ();
    type Init = Init;
    type Root = adw::ApplicationWindow;
    type Widgets = Widgets;

    fn init_root() -> Self::Root {
        adw::ApplicationWindow::builder()
            .title(gettext("Vessel"))
            .default_width(820)
            .default_height(700)
            .build()
    }

    fn init(init: Init, root: Self::Root, sender: ComponentSender<Self>) -> ComponentParts<Self> {
        let mut model = Library {
            store: init.store,
            exe: init.vessel_exe,
            vms: Vec::new(),
            broken: Vec::new(),
            procs: HashMap::new(),
            states: HashMap::new(),
            notice: None,
            generation: 0,
            wizard: None,
            settings: None,
            delete_dialog: None,
        };
        model.reload();

        let content = gtk::Box::new(gtk::Orientation::Vertical, 0);
        let header = adw::HeaderBar::new();
        header.set_title_widget(Some(&adw::WindowTitle::new(&gettext("Vessel"), &gettext("Virtual machines"))));
        let new_button = gtk::Button::with_mnemonic(&gettext("_New VM"));
        new_button.add_css_class("suggested-action");
        new_button.set_tooltip_text(Some(&gettext("Create a virtual machine")));
        {
            let s = sender.clone();
            new_button.connect_clicked(move |_| s.input(Msg::NewVm));
        }
        header.pack_start(&new_button);
        content.append(&header);

        let notice = gtk::Label::new(None);
        notice.add_css_class("error");
        notice.set_wrap(true);
        notice.set_selectable(true);
        notice.set_margin_top(6);
        notice.set_margin_start(12);
        notice.set_margin_end(12);
        notice.set_visible(false);
        content.append(&notice);

        let body = gtk::Box::new(gtk::Orientation::Vertical, 12);
        body.set_margin_top(12);
        body.set_margin_bottom(12);
        body.set_margin_start(12);
        body.set_margin_end(12);
        let problems = gtk::Box::new(gtk::Orientation::Vertical, 6);
        body.append(&problems);
        let empty = gtk::Label::new(Some(&gettext("No virtual machines yet. Press “New VM” to create one.")));
        empty.add_css_class("dim-label");
        empty.set_vexpand(true);
        body.append(&empty);
        let list = gtk::ListBox::new();
        list.add_css_class("boxed-list");
        list.set_selection_mode(gtk::SelectionMode::None);
        body.append(&list);
        let scroller = gtk::ScrolledWindow::new();
        scroller.set_vexpand(true);
        scroller.set_hscrollbar_policy(gtk::PolicyType::Never);
        scroller.set_child(Some(&body));
        content.append(&scroller);
        root.set_content(Some(&content));

        // the VM processes' states, through their control sockets
        {
            let s = sender.clone();
            gtk::glib::timeout_add_local(Duration::from_millis(500), move || {
                if s.input_sender().send(Msg::Poll).is_err() {
                    return gtk::glib::ControlFlow::Break;
                }
                gtk::glib::ControlFlow::Continue
            });
        }

        let mut widgets = Widgets { new_button, list, problems, notice, empty, rows: Vec::new(), shown_generation: u64::MAX };
        model.update_view(&mut widgets, sender);
        ComponentParts { model, widgets }
    }

    fn update(&mut self, msg: Msg, sender: ComponentSender<Self>, root: &Self::Root) {
        match msg {
            Msg::Poll => {
                let mut ended = Vec::new();
                for (name, p) in &mut self.procs {
                    let st = p.poll();
                    if matches!(st, VmState::Stopped | VmState::Failed { .. }) {
                        ended.push(name.clone());
                    }
                    self.states.insert(name.clone(), st);
                }
                for n in ended {
                    self.procs.remove(&n);
                }
            }
            Msg::NewVm => {
                let w = Wizard::builder()
                    .transient_for(root)
                    .launch(WizardInit { store_root: self.store.root().to_path_buf() })
                    .forward(sender.input_sender(), Msg::WizardDone);
                w.widget().present();
                self.wizard = Some(w);
            }
            Msg::WizardDone(out) => {
                if let Some(w) = self.wizard.take() {
                    w.widget().destroy();
                }
                if let WizardOutput::Created { name, start } = out {
                    self.reload();
                    if start {
                        sender.input(Msg::Start(name));
                    }
                }
            }
            Msg::Start(name) => {
                if self.procs.contains_key(&name) {
                    return;
                }
                let Some(vm) = self.vms.iter().find(|v| v.profile.name == name) else { return };
                if let Some(p) = vm.problems.first() {
                    self.set_notice(gettext("Cannot start {name}: {problem}").replace("{name}", &name).replace("{problem}", &p.to_string()));
                    return;
                }
                match VmProcess::spawn(&self.exe, &self.store, &name) {
                    Ok(p) => {
                        self.procs.insert(name.clone(), p);
                        self.states.insert(name, VmState::Starting);
                        self.notice = None;
                    }
                    Err(e) => self.set_notice(gettext("Cannot start {name}: {problem}").replace("{name}", &name).replace("{problem}", &format!("{e:#}"))),
                }
            }
            Msg::Pause(name) | Msg::Resume(name) if !self.procs.contains_key(&name) => {
                self.set_notice(gettext("{name} is not running").replace("{name}", &name));
            }
            Msg::Pause(name) => {
                let p = self.procs.get_mut(&name).unwrap();
                match p.pause() {
                    Ok(()) => {
                        self.states.insert(name, VmState::Paused);
                    }
                    Err(e) => self.set_notice(e.to_string()),
                }
            }
            Msg::Resume(name) => {
                let p = self.procs.get_mut(&name).unwrap();
                match p.resume() {
                    Ok(()) => {
                        self.states.insert(name, VmState::Running);
                    }
                    Err(e) => self.set_notice(e.to_string()),
                }
            }
            Msg::Stop(name) => {
                if let Some(p) = self.procs.remove(&name) {
                    self.states.insert(name.clone(), VmState::Stopping);
                    sender.spawn_oneshot_command(move || Cmd::Stopped {
                        name,
                        error: p.stop().err().map(|e| format!("{e:#}")),
                    });
                }
            }
            Msg::Edit(name) => {
                if self.procs.contains_key(&name) {
                    self.set_notice(gettext("Stop {name} before changing its settings").replace("{name}", &name));
                    return;
                }
                let Some(vm) = self.vms.iter().find(|v| v.profile.name == name) else { return };
                let s = Settings::builder()
                    .transient_for(root)
                    .launch(SettingsInit { store_root: self.store.root().to_path_buf(), profile: vm.profile.clone() })
                    .forward(sender.input_sender(), Msg::SettingsDone);
                s.widget().present();
                self.settings = Some(s);
            }
            Msg::SettingsDone(out) => {
                if let Some(s) = self.settings.take() {
                    s.widget().destroy();
                }
                if let SettingsOutput::Saved { old, new } = out {
                    tracing::info!(vm = new, was = old, "settings saved");
                    self.reload();
                }
            }
            Msg::Delete(name) => {
                if self.procs.contains_key(&name) {
                    self.set_notice(gettext("Stop {name} before deleting it").replace("{name}", &name));
                    return;
                }
                let dir = self.store.vm_dir(&name);
                let d = adw::MessageDialog::new(
                    Some(root),
                    Some(&gettext("Delete {name}?").replace("{name}", &name)),
                    Some(&gettext("The virtual machine’s settings are removed. This cannot be undone.")),
                );
                let files = gtk::CheckButton::with_label(&gettext("Also delete its disk images and files in {dir}").replace("{dir}", &dir.display().to_string()));
                d.set_extra_child(Some(&files));
                d.add_response("cancel", &gettext("_Cancel"));
                d.add_response("delete", &gettext("_Delete"));
                d.set_response_appearance("delete", adw::ResponseAppearance::Destructive);
                d.set_default_response(Some("cancel"));
                d.set_close_response("cancel");
                {
                    let s = sender.clone();
                    let files = files.clone();
                    d.connect_response(None, move |_, resp| {
                        if resp == "delete" {
                            s.input(Msg::DeleteConfirmed { name: name.clone(), files: files.is_active() });
                        }
                        s.input(Msg::DeleteDialogClosed);
                    });
                }
                d.present();
                self.delete_dialog = Some((d, files));
            }
            Msg::DeleteDialogClosed => self.delete_dialog = None,
            Msg::DeleteConfirmed { name, files } => {
                if let Err(e) = self.store.delete(&name, files) {
                    self.set_notice(e.to_string());
                }
                self.states.remove(&name);
                self.reload();
            }
        }
    }

    fn update_cmd(&mut self, cmd: Cmd, _sender: ComponentSender<Self>, _root: &Self::Root) {
        match cmd {
            Cmd::Stopped { name, error } => {
                if let Some(e) = error {
                    self.set_notice(e);
                }
                if !self.procs.contains_key(&name) {
                    self.states.insert(name, VmState::Stopped);
                }
            }
        }
    }

    fn update_view(&self, w: &mut Widgets, sender: ComponentSender<Self>) {
        if w.shown_generation != self.generation {
            w.shown_generation = self.generation;
            while let Some(c) = w.problems.first_child() {
                w.problems.remove(&c);
            }
            for msg in &self.broken {
                let b = gtk::Box::new(gtk::Orientation::Horizontal, 8);
                b.append(&gtk::Image::from_icon_name("dialog-warning-symbolic"));
                let l = gtk::Label::new(Some(&gettext("Cannot load a profile: {error}").replace("{error}", msg)));
                l.set_wrap(true);
                l.set_xalign(0.0);
                l.set_selectable(true);
                l.add_css_class("vm-problem");
                b.append(&l);
                w.problems.append(&b);
            }
            while let Some(c) = w.list.first_child() {
                w.list.remove(&c);
            }
            w.rows.clear();
            for vm in &self.vms {
                let (row_widget, row) = build_row(vm, &self.store, &sender);
                w.list.append(&row_widget);
                w.rows.push(row);
            }
            w.list.set_visible(!self.vms.is_empty());
            w.empty.set_visible(self.vms.is_empty());
        }
        w.notice.set_visible(self.notice.is_some());
        w.notice.set_text(self.notice.as_deref().unwrap_or(""));
        for r in &w.rows {
            let st = self.state(&r.name);
            let text = state_label(&st);
            if r.state.text() != text {
                r.state.set_text(&text);
            }
            let live = matches!(st, VmState::Starting | VmState::Running | VmState::Paused);
            r.start.set_sensitive(matches!(st, VmState::Stopped | VmState::Failed { .. }));
            r.pause.set_sensitive(matches!(st, VmState::Running | VmState::Paused));
            r.pause.set_label(&if st == VmState::Paused { gettext("_Resume") } else { gettext("_Pause") });
            r.stop.set_sensitive(live);
            r.settings.set_sensitive(!live && st != VmState::Stopping);
            r.delete.set_sensitive(!live && st != VmState::Stopping);
            update_thumbnail(r, &self.store);
        }
    }
}

fn update_thumbnail(r: &Row, store: &Store) {
    let path = vmproc::screen_path(store, &r.name);
    let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    if mtime == r.thumb_mtime.get() {
        return;
    }
    r.thumb_mtime.set(mtime);
    match mtime.map(|_| super::thumbnail::read_image(&path)) {
        Some(Ok(img)) => {
            let small = super::thumbnail::scale_to_fit(&img, THUMB_W, THUMB_H);
            r.thumbnail.set_paintable(Some(&super::thumbnail::to_texture(&small)))
        }
        Some(Err(e)) => tracing::debug!("thumbnail: {e:#}"),
        None => r.thumbnail.set_paintable(None::<&gtk::gdk::Paintable>),
    }
}

/// Thumbnail box (4:3 like most guest modes; 720x400 text mode fits with bars).
const THUMB_W: u32 = 160;
const THUMB_H: u32 = 120;

fn icon_button(icon: &str, tooltip: &str) -> gtk::Button {
    let b = gtk::Button::from_icon_name(icon);
    b.set_tooltip_text(Some(tooltip));
    b.set_valign(gtk::Align::Center);
    b
}

fn build_row(vm: &VmEntry, _store: &Store, sender: &ComponentSender<Library>) -> (gtk::ListBoxRow, Row) {
    let p = &vm.profile;
    let name = p.name.clone();
    let hbox = gtk::Box::new(gtk::Orientation::Horizontal, 12);
    hbox.set_margin_top(8);
    hbox.set_margin_bottom(8);
    hbox.set_margin_start(8);
    hbox.set_margin_end(8);

    let thumbnail = gtk::Picture::new();
    thumbnail.set_content_fit(gtk::ContentFit::Contain);
    thumbnail.set_can_shrink(false);
    thumbnail.set_size_request(THUMB_W as i32, THUMB_H as i32);
    thumbnail.add_css_class("vm-thumbnail");
    thumbnail.set_alternative_text(Some(&gettext("Last screen of {name}").replace("{name}", &name)));
    hbox.append(&thumbnail);

    let text = gtk::Box::new(gtk::Orientation::Vertical, 4);
    text.set_hexpand(true);
    text.set_valign(gtk::Align::Center);
    let title = gtk::Label::new(Some(&name));
    title.add_css_class("title-4");
    title.set_xalign(0.0);
    text.append(&title);
    let sum = gtk::Label::new(Some(&summary(p)));
    sum.add_css_class("dim-label");
    sum.set_xalign(0.0);
    sum.set_wrap(true);
    text.append(&sum);
    let state = gtk::Label::new(None);
    state.set_xalign(0.0);
    text.append(&state);
    for pr in &vm.problems {
        let l = gtk::Label::new(Some(&pr.to_string()));
        l.add_css_class("vm-problem");
        l.set_xalign(0.0);
        l.set_wrap(true);
        text.append(&l);
    }
    hbox.append(&text);

    let start = gtk::Button::with_mnemonic(&gettext("_Start"));
    start.add_css_class("suggested-action");
    let pause = gtk::Button::with_mnemonic(&gettext("_Pause"));
    let stop = gtk::Button::with_mnemonic(&gettext("S_top"));
    let settings = icon_button("emblem-system-symbolic", &gettext("Settings"));
    let delete = icon_button("user-trash-symbolic", &gettext("Delete"));
    delete.add_css_class("destructive-action");
    for b in [&start, &pause, &stop] {
        b.set_valign(gtk::Align::Center);
    }
    let wire = |b: &gtk::Button, f: fn(String) -> Msg| {
        let s = sender.clone();
        let n = name.clone();
        b.connect_clicked(move |_| s.input(f(n.clone())));
    };
    wire(&start, Msg::Start);
    wire(&stop, Msg::Stop);
    wire(&settings, Msg::Edit);
    wire(&delete, Msg::Delete);
    {
        let s = sender.clone();
        let n = name.clone();
        pause.connect_clicked(move |b| {
            // the label says what the click does
            let resume = b.label().is_some_and(|l| l == gettext("_Resume"));
            s.input(if resume { Msg::Resume(n.clone()) } else { Msg::Pause(n.clone()) });
        });
    }
    for b in [&start, &pause, &stop, &settings, &delete] {
        hbox.append(b);
    }
    let row = gtk::ListBoxRow::new();
    row.set_activatable(false);
    row.set_child(Some(&hbox));
    (
        row,
        Row {
            name,
            thumbnail,
            state,
            start,
            pause,
            stop,
            settings,
            delete,
            thumb_mtime: Default::default(),
        },
    )
}
