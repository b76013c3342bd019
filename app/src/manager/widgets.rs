//! Small GTK helpers shared by the manager's windows.

use relm4::gtk;
use relm4::gtk::prelude::*;

/// A drop-down of fixed, already translated labels.
pub fn dropdown(labels: &[String]) -> gtk::DropDown {
    let strs: Vec<&str> = labels.iter().map(String::as_str).collect();
    gtk::DropDown::from_strings(&strs)
}

/// A spin button for whole numbers.
pub fn spin(min: f64, max: f64, step: f64) -> gtk::SpinButton {
    let s = gtk::SpinButton::with_range(min, max, step);
    s.set_digits(0);
    s.set_numeric(true);
    s
}

/// A label for a form row (start-aligned, dimmed by the theme's `dim-label` class when `dim`).
pub fn label(text: &str) -> gtk::Label {
    let l = gtk::Label::new(Some(text));
    l.set_halign(gtk::Align::Start);
    l.set_xalign(0.0);
    l
}

/// Two-column form: a label, then its widget, one row per call.
pub struct Form {
    pub grid: gtk::Grid,
    row: i32,
}

impl Form {
    pub fn new() -> Form {
        let grid = gtk::Grid::new();
        grid.set_row_spacing(8);
        grid.set_column_spacing(12);
        Form { grid, row: 0 }
    }

    pub fn row(&mut self, text: &str, w: &impl IsA<gtk::Widget>) {
        let l = label(text);
        l.set_mnemonic_widget(Some(w));
        self.grid.attach(&l, 0, self.row, 1, 1);
        w.set_hexpand(true);
        self.grid.attach(w, 1, self.row, 1, 1);
        self.row += 1;
    }

    pub fn full(&mut self, w: &impl IsA<gtk::Widget>) {
        self.grid.attach(w, 0, self.row, 2, 1);
        self.row += 1;
    }
}
